"""The reference solutions, graded through the sandbox with the course's own exercise tests, earn
every point, and the learners' starting files (``exercises/``: every method raises
NotImplementedError) earn none: the remote proxies carry what the tests send and check (PIL
images, paths, numpy scalars, warnings, exceptions with their messages, save/load through the
shared temporary folder, the chatbot's generator of streamed text).

Graded the way Gradescope grades: through the exported autograder bundle, run in a temporary
root laid out like ``/autograder``, with the real toy CLIP and toy LLaVA (the bundle's one grading
run forks both workers from one process that imported torch: about 40 s on 2 cores for the
reference).
"""

from __future__ import annotations

import ast

import pytest
from grading_cases import REPO, grade_cli, run_bundle

from vlm_course import exercise_tests


def _points_in(path) -> float:
    """Points a test file is worth: each points(n) test counts once per parametrized case."""
    total = 0.0
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        points, cases = None, 1
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "points":
                points = float(dec.args[0].value)
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize":
                cases = len(dec.args[1].elts)
        total += (points or 0.0) * cases
    return total


@pytest.fixture(scope="module")
def course_bundle(tmp_path_factory):
    """The Gradescope autograder of the course's own exercise tests (both exercises)."""
    target = tmp_path_factory.mktemp("course_bundle") / "autograder.zip"
    run = grade_cli("--export-gradescope", target, "--call-timeout", 240, "--timeout", 900)
    assert run.returncode == 0, run.stderr[-3000:]
    return target


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_the_gradescope_bundle_gives_the_reference_full_marks_and_the_stub_none(course_bundle, tmp_path, folder):
    files = {name: (REPO / folder / name).read_text() for name in ("image_search.py", "chatbot.py")}
    r = run_bundle(course_bundle, tmp_path / "autograder", files)
    full = sum(_points_in(exercise_tests.folder() / f"test_{name}.py") for name in ("image_search", "chatbot"))
    assert sum(t["max_score"] for t in r["tests"]) == full > 0, "every test is listed with its points"
    assert r["extra_data"]["status"] == "ok" and r["extra_data"]["files"] == ["chatbot.py", "image_search.py"]
    if folder == "solutions":
        failed = {t["name"]: t["output"][-800:] for t in r["tests"] if t["status"] != "passed"}
        assert not failed, failed
        assert r["score"] == full
    else:
        assert r["score"] == 0.0
        assert all("NotImplementedError" in t["output"] for t in r["tests"]), [t["output"][:300] for t in r["tests"]]
