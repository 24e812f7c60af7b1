"""Shared helpers of the toy-checkpoint tests.

Quality bars (issue 3) are measured by ``vlm-course eval-toy-models`` on 200 fresh scenes; the tests
check them on smaller samples that CI can afford. A sample of n scenes varies by several points
around the true rate, so ``bar_check`` fails a sample only when it is *evidence* that the model is
below the bar: fewer successes than a model exactly at the bar would give in 95% of samples
(one-sided binomial test). A model clearly below the bar still fails; one at the bar does not
flicker with the choice of scenes.
"""

from __future__ import annotations

from math import comb

import pytest


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def below_bar(successes: int, n: int, bar: float, alpha: float = 0.05) -> bool:
    """True if ``successes`` out of ``n`` shows (one-sided, level ``alpha``) a true rate below ``bar``."""
    return binomial_cdf(successes, n, bar) < alpha


@pytest.fixture
def bar_check():
    """``bar_check(rights, bar, what)``: assert a sample of booleans does not show a rate below ``bar``."""

    def check(rights: list[bool], bar: float, what: str) -> None:
        n, k = len(rights), sum(rights)
        assert n > 0, f"no {what} samples"
        assert not below_bar(k, n, bar), (
            f"{what}: {k}/{n} = {k / n:.0%} is significantly below the {bar:.0%} bar "
            f"(P(X <= {k}) = {binomial_cdf(k, n, bar):.3f} for a model exactly at the bar)"
        )

    return check

