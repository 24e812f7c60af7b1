"""The reference solution, graded through the sandbox with the course's own exercise tests, earns
every point: the remote proxies carry what the tests send and check (PIL images, paths, numpy
scalars, warnings, exceptions with their messages, save/load through the shared temporary folder).

One run with the real toy CLIP (about a minute on 2 cores); the chatbot's tests take longer and
are left to ``vlm-course grade solutions`` (see docs/grading.md).
"""

from __future__ import annotations

import ast

import pytest
from grading_cases import REPO, grade_cli, results_of

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


@pytest.mark.slow
def test_reference_image_search_earns_full_points_in_the_sandbox(tmp_path):
    run = grade_cli(REPO / "solutions", "--only", "image_search", "--out", tmp_path, "--call-timeout", 240, "--timeout", 900)
    assert run.returncode == 0, run.stderr[-3000:]
    r = results_of(tmp_path, "solutions")
    failed = {t["name"]: t["output"][-800:] for t in r["tests"] if t["status"] != "passed"}
    assert not failed, failed
    assert r["score"] == _points_in(exercise_tests.folder() / "test_image_search.py") > 0
    assert r["extra_data"]["status"] == "ok"
    assert r["extra_data"]["files"] == ["chatbot.py", "image_search.py"]
