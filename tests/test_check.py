"""``vlm-course check``: a short, teacher-like self-check of the learner's ``exercises/``.

Two real runs (the untouched stubs of both exercises, and the reference image search) and the
report logic on hand-made records. About 70 s on 2 cores.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from vlm_course import check as check_mod
from vlm_course import cli

REPO = Path(__file__).resolve().parents[1]


def _record(test: str, passed: bool, points: float = 1.0, case: str = "", **extra) -> dict:
    return {"id": f"test_image_search.py::{test}{case}", "file": "image_search", "test": test, "points": points,
            "hint": f"{test} 힌트", "passed": passed, "error": extra.get("error", ""),
            "unfinished": extra.get("unfinished")}


@pytest.mark.slow
def test_on_the_untouched_stubs_it_is_short_and_says_where_to_start(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "exercises", tmp_path / "exercises")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLM_COURSE_SUBMISSION", raising=False)
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 40, out
    assert "image_search: 0 / 24점" in out and "chatbot: 0 / 21점" in out
    assert "합계 0 / 45점" in out
    assert lines[-1].startswith("여기서 시작하세요") and "CLIPImageSearch.index_images" in lines[-1], lines[-1]
    assert "✓" not in out, "an untouched stub passes nothing"
    for internals in ("pluggy", "Traceback", "conftest", "passed", "solutions", "Regex", "AssertionError"):
        assert internals not in out, f"{internals!r} in the learner's report:\n{out}"


FAKE_TESTS = """
import pytest

from vlm_course.submission import load_submission


@pytest.mark.points(2, hint="두 배를 돌려주세요")
def test_doubles():
    assert load_submission("image_search").double(3) == 6


@pytest.mark.points(1, hint="음수는 ValueError")
@pytest.mark.parametrize("bad", [-1, -2])
def test_rejects_negatives(bad):
    with pytest.raises(ValueError):
        load_submission("image_search").double(bad)
"""

FINISHED = """
def double(x):
    if x < 0:
        raise ValueError(x)
    return 2 * x
"""


def test_full_marks_and_a_real_failure_on_a_small_exercise(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_image_search.py").write_text(FAKE_TESTS)
    learner = tmp_path / "mine"
    learner.mkdir()
    (learner / "image_search.py").write_text(FINISHED)
    out = io.StringIO()
    result = check_mod.check("image_search", learner, tests=tmp_path / "tests", stream=out)
    assert result.full_marks and result.points() == (4.0, 4.0), out.getvalue()
    assert out.getvalue().rstrip().endswith("만점입니다. 수고했습니다!") and "✗" not in out.getvalue()

    (learner / "image_search.py").write_text(FINISHED.replace("if x < 0", "if x < -1"))
    out = io.StringIO()
    result = check_mod.check("image_search", learner, tests=tmp_path / "tests", stream=out)
    assert result.points() == (3.0, 4.0) and not result.full_marks
    assert "✗   1/2   rejects_negatives  음수는 ValueError  (DID NOT RAISE ValueError)" in out.getvalue()
    assert "합계" not in out.getvalue(), "one exercise: its points line is the total"


def test_rows_group_parametrized_cases_and_teardown_failures():
    records = [
        _record("test_search", True, 2),
        _record("test_rejects", True, case="[0]"),
        _record("test_rejects", False, case="[-3]", error="DID NOT RAISE ValueError"),
        _record("test_save", True, 2),
        _record("test_save", False, 2, error="PermissionError: tmp"),  # its teardown failed after the call passed
    ]
    rows = check_mod.collect(["image_search"], records)
    assert [(r.test, r.got, r.total, r.passed) for r in rows] == [
        ("test_search", 2, 2, True), ("test_rejects", 1, 2, False), ("test_save", 0, 2, False)]
    result = check_mod.CheckResult(Path("exercises"), ["image_search"], rows)
    text = check_mod.report(result)
    assert "✗   1/2   rejects  test_rejects 힌트  (DID NOT RAISE ValueError)" in text
    assert "여기서 시작하세요 (start here): image_search의 rejects: test_rejects 힌트" in text
    assert not result.full_marks


def test_start_here_is_the_first_unfinished_method_in_file_order():
    late = {"file": "image_search.py", "method": "CLIPImageSearch.search", "line": 90}
    early = {"file": "image_search.py", "method": "CLIPImageSearch.index_images", "line": 70}
    rows = check_mod.collect(["image_search"], [
        _record("test_a", False, unfinished=late, error="NotImplementedError: search"),
        _record("test_b", False, unfinished=early, error="NotImplementedError: index_images"),
    ])
    result = check_mod.CheckResult(Path("exercises"), ["image_search"], rows)
    assert result.start_here() == "image_search.py의 CLIPImageSearch.index_images (70행): TODO를 채우세요"
    assert "NotImplementedError" not in check_mod.report(result), "an unwritten method needs the hint, not the error"


def test_errors_show_once_every_method_is_written():
    unfinished = {"file": "image_search.py", "method": "CLIPImageSearch.search", "line": 90}
    records = [_record("test_a", False, unfinished=unfinished, error="NotImplementedError: search"),
               _record("test_b", False, error="AssertionError: Regex pattern did not match.")]
    text = check_mod.report(check_mod.CheckResult(Path("exercises"), ["image_search"],
                                                  check_mod.collect(["image_search"], records)))
    assert "Regex" not in text, "while methods are unwritten, a row shows its hint only"
    text = check_mod.report(check_mod.CheckResult(Path("exercises"), ["image_search"],
                                                  check_mod.collect(["image_search"], records[1:])))
    assert "test_b 힌트  (AssertionError: Regex pattern did not match.)" in text


def test_a_missing_folder_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLM_COURSE_SUBMISSION", raising=False)
    assert cli.main(["check"]) == 2
    assert "vlm-course check --submission DIR" in capsys.readouterr().err


def test_an_unknown_exercise_is_refused():
    with pytest.raises(ValueError, match="image_search"):
        check_mod.check("captioning", stream=io.StringIO())
