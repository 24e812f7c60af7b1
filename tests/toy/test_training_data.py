"""The hard-example data of the LLaVA toys' polish stage (``toybuild.data.hard_training_scenes``) and the
recombined describe phrasings (``toybuild.llava.RECOMBINED_DESCRIBE_PROMPTS``)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from vlm_course import shapesworld as sw
from vlm_course.toybuild import data, llava

POOL = data.hard_training_scenes(600, seed=3)


def _meets_spec(scene: sw.Scene) -> bool:
    lo, hi = (28, 70) if len(scene.objects) == 1 else (21, 42)
    inside = all(lo <= o.r <= hi and 0 <= o.cx - o.r and o.cx + o.r <= 223 and 0 <= o.cy - o.r and o.cy + o.r <= 223
                 for o in scene.objects)
    apart = all(math.dist((a.cx, a.cy), (b.cx, b.cy)) > a.r + b.r + sw.MIN_GAP
                for a, b in itertools.combinations(scene.objects, 2))
    return inside and apart and all(215 <= c <= 255 for c in scene.background)


def test_hard_pool_is_deterministic_spec_scenes_with_a_defined_order():
    assert len(POOL) == 600 and POOL == data.hard_training_scenes(600, seed=3)
    assert POOL != data.hard_training_scenes(600, seed=4)
    assert all(_meets_spec(s) for s in POOL)
    assert all(len({o.cx for o in s.objects}) == len(s.objects) for s in POOL)


def test_hard_pool_over_samples_near_ties_and_holds_mirrors_and_transposes():
    near = [s for s in POOL if (data.min_x_gap(s) or 999) < data.NEAR_TIE_PX]
    fresh = data.training_scenes(600, seed=3)
    fresh_near = [s for s in fresh if (data.min_x_gap(s) or 999) < data.NEAR_TIE_PX]
    assert len(near) > 2 * len(fresh_near)
    base = POOL[0]
    assert POOL[1] == data.mirrored(base) and data.mirrored(POOL[1]) == base
    assert data.transposed(data.transposed(base)) == base
    if len(base.objects) > 1:
        assert sw.caption(POOL[1]).split(" and ")[-1] == sw.caption(base).split(", ")[0].split(" and ")[0]


def test_hard_scene_and_gap_helpers():
    a = sw.ShapeObject("circle", "red", 50, 50, 30)
    b = sw.ShapeObject("square", "blue", 60, 150, 30)
    c = sw.ShapeObject("triangle", "green", 170, 100, 30)
    assert data.min_x_gap(sw.Scene((a,), (230, 230, 230))) is None
    assert data.min_x_gap(sw.Scene((a, b, c), (230, 230, 230))) == 10
    assert data.is_hard(sw.Scene((a, b), (230, 230, 230)))
    assert not data.is_hard(sw.Scene((a, c), (230, 230, 230)))
    assert data.is_hard(sw.Scene((sw.ShapeObject("circle", "red", 30, 100, 30),), (230, 230, 230)))  # on the margin


def test_recombined_prompts_never_hold_a_held_out_phrasing():
    prompts = llava.RECOMBINED_DESCRIBE_PROMPTS
    norm = lambda p: " ".join(p.lower().rstrip("?.").split())  # noqa: E731
    assert not {norm(p) for p in prompts} & {norm(p) for p in sw.HELDOUT_DESCRIBE_PROMPTS}
    assert set(sw.PUBLIC_DESCRIBE_PROMPTS) - {"What's in this picture?", "What does the picture show?"} <= set(prompts)
    assert "What's the content of this picture?" in prompts and "What's in this picture?" not in prompts
    assert len(prompts) == len(set(prompts)) > 2 * len(sw.PUBLIC_DESCRIBE_PROMPTS)


@pytest.mark.parametrize("seed", range(3))
def test_polish_mix_draws_hard_scenes_and_never_a_held_out_prompt(seed):
    rng = random.Random(seed)
    hard = [i for i, s in enumerate(POOL) if data.is_hard(s)]
    busy = [i for i, s in enumerate(POOL) if len(s.objects) == 3]
    samples = [s for _ in range(20) for s in llava.POLISH_MIX.draw_batch(16, POOL, rng, busy, hard)]
    asked = {q for s in samples for q, _ in s.turns}
    assert not asked & set(sw.HELDOUT_DESCRIBE_PROMPTS)
    share = sum(data.is_hard(POOL[s.images[0]]) for s in samples) / len(samples)
    assert share > sum(map(data.is_hard, POOL)) / len(POOL)
