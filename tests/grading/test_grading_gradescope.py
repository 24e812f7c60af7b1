"""The Gradescope autograder bundle: exported by ``vlm-course grade --export-gradescope`` and run the
way Gradescope runs it, in a temporary root laid out like ``/autograder`` (source, submission,
results), with the fake exercise of grading_cases (a few seconds per run)."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from grading_cases import BROKEN_CLASS, FULL_POINTS, GOOD, grade_cli, run_bundle

from vlm_course.grading import gradescope


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, hidden_tests) -> Path:
    target = tmp_path_factory.mktemp("export") / "autograder.zip"
    run = grade_cli("--export-gradescope", target, "--tests", hidden_tests, "--timeout", 60, "--call-timeout", 8)
    assert run.returncode == 0, run.stderr
    return target


def test_the_bundle_holds_what_gradescope_runs(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) for i in zf.infolist()}
        saved = json.loads(zf.read("grading.json"))
    assert {"setup.sh", "run_autograder", "grading.json", "tests/test_image_search.py", "course/pyproject.toml",
            "course/vlm_course/grading/plugin.py", "course/vlm_course/toy_models/clip/config.json"} <= names
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert not any("__pycache__" in n for n in names)
    assert saved["args"][:2] == ["--timeout", "60.0"] and "--show-failures" not in saved["args"]


@pytest.mark.parametrize(("files", "score", "status"), [({"image_search.py": GOOD}, FULL_POINTS, "ok"),
                                                       ({"image_search.py": BROKEN_CLASS}, 0.0, "ok"),
                                                       ({}, 0.0, "missing")], ids=["reference", "stub", "empty"])
def test_the_bundle_grades_in_a_gradescope_layout(bundle, tmp_path, files, score, status):
    results = run_bundle(bundle, tmp_path / "autograder", files)
    assert results["score"] == score and results["extra_data"]["status"] == status, results["output"]
    assert {"score", "output", "tests", "visibility", "execution_time"} <= set(results)
    assert sum(t["max_score"] for t in results["tests"]) == FULL_POINTS


def test_a_results_file_is_written_even_when_the_bundle_is_broken(bundle, tmp_path):
    root = tmp_path / "autograder"
    (root / "results").mkdir(parents=True)
    (root / "source").mkdir()
    (root / "source" / "grading.json").write_text("{not json")
    gradescope.run(root)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0.0 and results["extra_data"]["status"] == "error"
    assert "the autograder failed" in results["output"]
    shutil.rmtree(root)
