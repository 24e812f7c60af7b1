"""The one-sided binomial check the quality-bar tests use (tests/toy/conftest.py)."""

from __future__ import annotations

import pytest


def test_a_sample_at_the_bar_passes_and_one_clearly_below_fails(bar_check):
    bar_check([True] * 28 + [False] * 12, 0.8, "describe")  # 70%: what a model at 80% can draw
    with pytest.raises(AssertionError, match=r"describe: 27/40 = 68% is significantly below the 80% bar"):
        bar_check([True] * 27 + [False] * 13, 0.8, "describe")
    bar_check([True] * 73 + [False] * 27, 0.8, "describe")
    with pytest.raises(AssertionError, match="72/100"):
        bar_check([True] * 72 + [False] * 28, 0.8, "describe")
    with pytest.raises(AssertionError, match="no answers samples"):
        bar_check([], 0.85, "answers")
