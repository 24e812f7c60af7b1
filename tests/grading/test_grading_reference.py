"""The reference solution, graded through the sandbox with the course's own exercise tests, earns
every point: the remote proxies carry what the tests send and check (PIL images, paths, numpy
scalars, warnings, exceptions with their messages, save/load through the shared temporary folder).

Graded the way Gradescope grades: through the exported autograder bundle, run in a temporary
root laid out like ``/autograder``, with the real toy CLIP (about a minute on 2 cores; the stub's
0 points are checked with the fake exercise in test_grading_gradescope.py, in seconds). The
chatbot's tests take longer and are left to ``vlm-course grade solutions`` (see docs/grading.md).
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
    """The Gradescope autograder of the course's own image-search tests."""
    target = tmp_path_factory.mktemp("course_bundle") / "autograder.zip"
    run = grade_cli("--export-gradescope", target, "--only", "image_search", "--call-timeout", 240, "--timeout", 900)
    assert run.returncode == 0, run.stderr[-3000:]
    return target


@pytest.mark.slow
def test_reference_image_search_earns_full_points_through_the_gradescope_bundle(course_bundle, tmp_path):
    files = {name: (REPO / "solutions" / name).read_text() for name in ("image_search.py", "chatbot.py")}
    r = run_bundle(course_bundle, tmp_path / "autograder", files)
    failed = {t["name"]: t["output"][-800:] for t in r["tests"] if t["status"] != "passed"}
    assert not failed, failed
    assert r["score"] == _points_in(exercise_tests.folder() / "test_image_search.py") > 0
    assert r["extra_data"]["status"] == "ok"
    assert r["extra_data"]["files"] == ["chatbot.py", "image_search.py"]
