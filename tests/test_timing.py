import itertools

import pytest

from vlm_course.timing import time_call, time_calls


class FakeClock:
    """A clock that each timed call advances by a cost its function sets (no real time involved)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_call_runs_warmup_then_repeats_and_reports_the_median():
    calls = []
    timing = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and timing.repeats == 4
    assert 0 <= timing.best <= timing.median and timing.ms == timing.median * 1000


def test_time_call_needs_at_least_one_repeat():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_call(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="nothing to time"):
        time_calls({})


def test_time_calls_warms_every_function_up_before_timing_any():
    log = []
    fns = {name: (lambda name=name: log.append(name)) for name in "abc"}
    time_calls(fns, repeats=3, warmup=2)
    assert log[:6] == list("abcabc")
    assert sorted(log[6:]) == sorted("abc" * 3)


def test_time_calls_takes_turns_and_rotates_who_goes_first():
    log = []
    fns = {name: (lambda name=name: log.append(name)) for name in "abc"}
    time_calls(fns, repeats=4, warmup=0)
    rounds = [log[i : i + 3] for i in range(0, 12, 3)]
    assert rounds == [list("abc"), list("bca"), list("cab"), list("abc")]


def test_time_calls_reports_each_functions_own_median_and_best():
    clock = FakeClock()
    costs = {"fast": itertools.cycle([1.0, 5.0, 2.0]), "slow": itertools.cycle([10.0, 30.0, 20.0])}
    warm = {"fast": 100.0, "slow": 100.0}  # an expensive first call must not count

    def make(name):
        def fn():
            clock.now += warm.pop(name, None) or next(costs[name])
        return fn

    timings = time_calls({name: make(name) for name in costs}, repeats=3, warmup=1, clock=clock)
    assert list(timings) == ["fast", "slow"]
    assert (timings["fast"].median, timings["fast"].best, timings["fast"].repeats) == (2.0, 1.0, 3)
    assert (timings["slow"].median, timings["slow"].best) == (20.0, 10.0)
