"""A trusted test process that dies (the OOM killer, a signal) never yields an ``ok`` grade: the
submission is an ``error`` with the reason, and the next run grades it again instead of reusing it.
Without a fork server (``--start spawn``, or one that died) grading goes on with fresh processes."""

from __future__ import annotations

import os
import signal

import pytest
from grading_cases import FULL_POINTS, GOOD, grade_cli, results_of

from vlm_course.grading import runner, sandbox

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


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_without_a_fork_server_the_processes_are_spawned(tmp_path, hidden_tests, start):
    """``--start spawn`` (grader 2.0's way) and a fork server that died mid-run both grade by starting
    fresh interpreters: same points, and the results do not claim a fork."""
    sub = tmp_path / "bob"
    sub.mkdir()
    (sub / "image_search.py").write_text(GOOD)
    options = runner.GradeOptions(tests_dir=hidden_tests, out_dir=tmp_path / "out", start=start, call_timeout=30)
    with runner.class_server(options) as server:
        assert (server is None) == (start == "spawn")
        if server is not None:  # the OOM killer, say
            os.kill(server.server.pid, signal.SIGKILL)
            server.server.wait()
        r = runner.grade(sub, options)
    assert r["score"] == FULL_POINTS and r["extra_data"]["status"] == "ok", r["output"]
    assert "start" not in r["extra_data"]["sandbox"], r["extra_data"]["sandbox"]
