"""Measure how long calls take, the same way everywhere in the course (median of repeats).

``time_call`` times one function. ``time_calls`` compares several fairly: it warms every one up
before timing any, then takes turns (one timed call each per round, in a rotating order), so the
first one measured does not pay for the process warming up and a change in machine load during
the run hits them all alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the best of ``repeats`` timed calls (after warm-up)."""

    median: float
    best: float
    repeats: int

    @property
    def ms(self) -> float:
        return self.median * 1000

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(statistics.median(samples), min(samples), len(samples))


def _check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")


def time_call(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    return time_calls({"fn": fn}, repeats=repeats, warmup=warmup, clock=clock)["fn"]


def time_calls(fns: Mapping[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """Time several functions fairly (see the module docstring): name -> ``Timing``, in the given order.

    Every function is called ``warmup`` times untimed first; then ``repeats`` rounds follow in which
    each is called once, timed, starting one place further along the list each round.
    """
    _check_repeats(repeats)
    if not fns:
        raise ValueError("nothing to time: pass at least one function")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            fns[name]()
            samples[name].append(clock() - start)
    return {name: Timing.of(samples[name]) for name in names}
