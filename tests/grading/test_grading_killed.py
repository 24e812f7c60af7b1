"""A trusted test process that dies (the OOM killer, a signal) never yields an ``ok`` grade: the
submission is an ``error`` with the reason, and the next run grades it again instead of reusing it."""

from __future__ import annotations

import pytest
from grading_cases import GOOD, grade_cli, results_of

from vlm_course.grading import sandbox

DIES = '''
import os
import signal

import pytest


@pytest.mark.points(1)
def test_first(image_search_cls):
    assert image_search_cls("toy").index_images(["a"]) == 1


@pytest.mark.points(1)
def test_the_process_dies(image_search_cls):
    os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("mode", ["process", pytest.param("namespace", marks=pytest.mark.skipif(
    not sandbox.namespace_support()[0], reason=f"namespace sandbox unavailable: {sandbox.namespace_support()[1]}"))])
def test_a_killed_test_process_is_an_error_and_graded_again(tmp_path, mode):
    tests, sub = tmp_path / "tests", tmp_path / "alice"
    tests.mkdir()
    sub.mkdir()
    (tests / "test_image_search.py").write_text(DIES)
    (sub / "image_search.py").write_text(GOOD)
    args = (sub, "--tests", tests, "--out", tmp_path / "out", "--sandbox", mode, "--call-timeout", 30)
    first = grade_cli(*args)
    r = results_of(tmp_path / "out", "alice")
    assert first.returncode == 1, first.stderr[-2000:]
    assert r["extra_data"]["status"] == "error" and r["extra_data"]["complete"] is False
    assert "exit status -9" in r["output"] and r["score"] == 1.0
    again = grade_cli(*args)
    assert "(cached)" not in again.stdout and "error" in again.stdout
