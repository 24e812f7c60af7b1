import pytest

from vlm_course.timing import time_call


def test_time_call_runs_warmup_then_repeats_and_reports_the_median():
    calls = []
    timing = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and timing.repeats == 4
    assert 0 <= timing.best <= timing.median and timing.ms == timing.median * 1000


def test_time_call_needs_at_least_one_repeat():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_call(lambda: None, repeats=0)
