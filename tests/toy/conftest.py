"""Shared fixtures of the toy-checkpoint tests.

Each ``test_<model>.py`` declares its checkpoint the way transformers' ``tests/models/*`` model testers
do, with a module-level ``TOY = {...}`` spec (the fields of ``ToyTester``: name, model class, processor
class, which fresh scenes it tests on); the fixtures here (``path``, ``model``, ``processor``, ``scenes``, ``images``) are
built from it once per module.

Quality bars (``vlm_course/toybuild/bars.py``) are measured by ``vlm-course eval-toy-models`` on 200
fresh scenes of every spec sampler; the tests check them on smaller samples that CI can afford. A sample of n scenes varies by several points
around the true rate, so ``bar_check`` fails a sample only when it is *evidence* that the model is
below the bar: fewer successes than a model exactly at the bar would give in 95% of samples
(one-sided binomial test). A model clearly below the bar still fails; one at the bar does not
flicker with the choice of scenes.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from pathlib import Path

import pytest
from transformers import AutoProcessor

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import bars, data


@dataclass(frozen=True)
class ToyTester:
    """What a test module of one shipped toy checkpoint tests: ``name`` loaded with ``model_class`` and
    ``processor_class``, on ``n`` fresh scenes (``n_objects`` objects each if set) at ``offset`` from the
    evaluation seed (each module its own offset, so the modules test different scenes)."""

    name: str
    model_class: type
    processor_class: type = AutoProcessor
    n: int = 60
    offset: int = 0
    n_objects: int | None = None

    @property
    def path(self) -> Path:
        return toy.model_path(self.name)

    def load_model(self):
        return self.model_class.from_pretrained(self.path).eval()

    def load_processor(self):
        return self.processor_class.from_pretrained(self.path)

    def scenes(self, sampler: str = "course") -> list[sw.Scene]:
        return data.eval_scenes(self.n, n_objects=self.n_objects, offset=self.offset, sampler=sampler)


@pytest.fixture(scope="module")
def toy_tester(request) -> ToyTester:
    spec = getattr(request.module, "TOY", None)
    if not isinstance(spec, dict):
        raise pytest.UsageError(f"{request.module.__name__} uses the toy fixtures: declare TOY = {{'name': ..., "
                                "'model_class': ...}} in it (the fields of tests/toy/conftest.py's ToyTester)")
    return ToyTester(**spec)


@pytest.fixture(scope="module")
def path(toy_tester):
    return toy_tester.path


@pytest.fixture(scope="module")
def model(toy_tester):
    return toy_tester.load_model()


@pytest.fixture(scope="module")
def processor(toy_tester):
    return toy_tester.load_processor()


@pytest.fixture(scope="module")
def scenes(toy_tester):
    return toy_tester.scenes()


@pytest.fixture(scope="module", params=list(sw.SAMPLERS))
def sampler(request) -> str:
    """Each spec sampler in turn (the bars hold on every one): a test using it runs once per sampler."""
    return request.param


@pytest.fixture(scope="module")
def bar_scenes(toy_tester, sampler):
    """The module's fresh scenes drawn by ``sampler`` (for the quality-bar tests)."""
    return toy_tester.scenes(sampler)


@pytest.fixture(scope="module")
def images(scenes):
    return [s.render() for s in scenes]


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



@pytest.fixture
def matches_card(bar_check):
    """``matches_card(model, metric, rights, sampler="course")``: ``bar_check`` of a sample against the model
    card's measured figure (200 scenes): the shipped checkpoint still does what its card says."""

    def check(model: str, metric: str, rights: list[bool], sampler: str = "course") -> None:
        key = metric + data.sampler_suffix(sampler)
        measured = bars.card_scores(toy.model_path(model)).get(key)
        if measured is None:
            raise AssertionError(f"the {model} model card has no {key!r} figure; run vlm-course eval-toy-models "
                                 f"--only {model} --update-cards")
        bar_check(rights, measured, f"{model} {key} (the card's {measured:.1%})")

    return check


@pytest.fixture
def meets_bar(bar_check):
    """``meets_bar(model, metric, rights, sampler="course")``: ``bar_check`` of a sample against the course's
    bar for ``model``'s ``metric`` (bars.py), or against the model card's measured figure where that is below
    the bar: the sample then checks that the checkpoint still does what its card says, and
    ``tests/toy/test_bars.py`` tracks the unmet bar itself as a strict expected failure."""

    def check(model: str, metric: str, rights: list[bool], sampler: str = "course") -> None:
        need = bars.bar(model, metric)
        key = metric + data.sampler_suffix(sampler)
        measured = bars.card_scores(toy.model_path(model)).get(key)
        if measured is None:
            raise AssertionError(f"the {model} model card has no {key!r} figure; run vlm-course eval-toy-models "
                                 f"--only {model} --update-cards")
        if measured >= need:
            bar_check(rights, need, f"{model} {key}")
        else:
            bar_check(rights, measured, f"{model} {key} (the card's {measured:.1%}; the {need:.0%} bar is unmet)")

    return check
