"""The fallback sandbox (``--sandbox process``: no namespaces), as on a laptop or in non-root CI.

It still enforces the limits, the wall-clock timeout and the death of whatever the worker started
(the grader adopts orphans as a child subreaper); it does not hide files or cut the network.
"""

from __future__ import annotations

import os
import uuid

import psutil
import pytest
from grading_cases import BROKEN_CLASS, FULL_POINTS, grade_cli, hostile_sources, results_of, write_submissions

from vlm_course.grading import sandbox


@pytest.fixture(scope="module")
def graded(tmp_path_factory, hidden_tests):
    root = tmp_path_factory.mktemp("fallback_class")
    marker = f"vlm-grading-daemon-{uuid.uuid4().hex}"
    ctx = dict.fromkeys(("port", "hidden_test", "solution", "sibling", "grader_file", "own_results", "good_results", "gradebook"), 0)
    ctx["marker"] = marker
    sources = {k: v for k, v in hostile_sources(ctx).items() if k in ("good", "loop_import", "exit_import", "daemon")}
    # a chain deeper than recursive clean-up can remove, in its own folder (in process mode /tmp is the host's)
    sources["deep_chain"] = {"image_search.py": "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
                                                + BROKEN_CLASS}
    paths = write_submissions(root / "subs", sources)
    paths.pop("good_zip")
    run = grade_cli(*paths.values(), "--tests", hidden_tests, "--out", root / "out", "--jobs", 2, "--timeout", 40,
                    "--call-timeout", 8, "--memory-mb", 768, "--sandbox", "process", tmpdir=root / "grader_tmp")
    leftover = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    return {"run": run, "out": root / "out", "leftover": leftover, "tmp": root / "grader_tmp"}


def test_process_mode_grades_like_the_namespace_mode(graded):
    assert graded["run"].returncode == 0, graded["run"].stderr[-3000:]
    assert "weaker sandbox" in graded["run"].stderr
    good = results_of(graded["out"], "good")
    assert good["score"] == FULL_POINTS, good["output"]
    assert good["extra_data"]["sandbox"]["mode"] == "process"
    assert good["extra_data"]["sandbox"]["network"] == "none" and good["extra_data"]["sandbox"]["filesystem"] == "none"
    assert "WEAKER SANDBOX: it lacks network isolation" in good["output"], good["output"]
    assert good["extra_data"]["sandbox"]["lacks"] == sandbox.process_lacks()
    for item in sandbox.process_lacks():
        assert f"\n  - {item}" in graded["run"].stderr, graded["run"].stderr[-3000:]
    expected = {"loop_import": "timeout", "exit_import": "crashed", "daemon": "daemon"}
    for name, status in expected.items():
        r = results_of(graded["out"], name)
        assert r["score"] == 0.0 and r["extra_data"]["status"] == status, f"{name}: {r['output']}"


def test_nothing_is_left_in_the_temporary_folder(graded):
    assert results_of(graded["out"], "deep_chain")["extra_data"]["status"] == "ok"
    assert os.listdir(graded["tmp"]) == [], "process mode left folders behind"


def test_daemons_are_found_and_killed_without_namespaces(graded):
    assert graded["leftover"] == [], f"the daemon survived: {graded['leftover']}"
