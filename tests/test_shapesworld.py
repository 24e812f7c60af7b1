"""ShapesWorld follows its spec, docs/shapesworld.md, exactly (both samplers)."""

from __future__ import annotations

import itertools
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from vlm_course import shapesworld as sw

SCENES = sw.sample_scenes(400, seed=7)


def test_same_seed_same_scenes_and_pixels():
    again = sw.sample_scenes(400, seed=7)
    assert again == SCENES
    assert np.array_equal(np.asarray(SCENES[3].render()), np.asarray(again[3].render()))
    assert sw.sample_scenes(20, seed=8) != SCENES[:20]


def test_object_counts_are_uniform_over_1_to_3():
    counts = [len(s.objects) for s in sw.sample_scenes(3000, seed=1)]
    for n in (1, 2, 3):
        assert abs(counts.count(n) / len(counts) - 1 / 3) < 0.04


ALT_SCENES = sw.sample_scenes(400, seed=7, sampler="alt")
SPEC = (Path(__file__).resolve().parents[1] / "docs" / "shapesworld.md").read_text(encoding="utf-8")


def _spec_numbers(pattern: str) -> tuple[int, ...]:
    match = re.search(pattern, SPEC)
    assert match, f"docs/shapesworld.md no longer says {pattern!r}"
    return tuple(int(g) for g in match.groups())


def test_the_generator_uses_the_numbers_of_docs_shapesworld_md():
    assert _spec_numbers(r"Canvas: (\d+) x (\d+) RGB") == (sw.CANVAS_SIZE,) * 2
    assert _spec_numbers(r"integer drawn uniformly from \[(\d+), (\d+)\]") == sw.BACKGROUND_RANGE
    assert _spec_numbers(r"single-object scenes (\d+)\.\.(\d+)") == sw.SINGLE_OBJECT_RADIUS
    assert _spec_numbers(r"2 or 3 objects (\d+)\.\.(\d+)") == sw.MULTI_OBJECT_RADIUS
    assert _spec_numbers(r"r1 \+ r2 \+ (\d+)") == (sw.MIN_GAP,)
    colours = dict(re.findall(r"(red|green|blue|yellow) \((\d+, \d+, \d+)\)", SPEC))
    assert {c: tuple(map(int, v.split(", "))) for c, v in colours.items()} == sw.COLORS
    for shape in sw.SHAPES:
        assert f"- {shape}:" in SPEC
    for question in ("how many shapes are there?", "how many {shape}s are there?", "what color is the {shape}?",
                     "what shape is the {colour} object?", "is there a {colour} {shape}?", "is there a {shape}?"):
        assert f"| {question} |" in SPEC
    assert '"The image shows {caption}."' in SPEC and f'"{sw.COMPARE_PROMPT}"' in SPEC
    for name, sampler in sw.SAMPLERS.items():
        assert f"`{name}` (`{sampler.__name__}`)" in SPEC


def test_alt_sampler_is_deterministic_and_built_differently():
    assert sw.sample_scenes(400, seed=7, sampler="alt") == ALT_SCENES
    assert ALT_SCENES[:50] != SCENES[:50]
    counts = [len(s.objects) for s in sw.sample_scenes(3000, seed=1, sampler="alt")]
    for n in (1, 2, 3):
        assert abs(counts.count(n) / len(counts) - 1 / 3) < 0.04
    touching = [o for s in ALT_SCENES for o in s.objects if min(o.cx, o.cy) == o.r or max(o.cx, o.cy) == 223 - o.r]
    assert len(touching) > 100
    assert all(len({o.cx for o in s.objects}) == len(s.objects) for s in ALT_SCENES)
    with pytest.raises(ValueError, match="unknown sampler 'nope'; choose from course, alt"):
        sw.sample_scenes(3, sampler="nope")


@pytest.mark.parametrize("scene", SCENES[:200] + ALT_SCENES[:200])
def test_placement_rules(scene):
    lo, hi = (28, 70) if len(scene.objects) == 1 else (21, 42)
    assert all(215 <= c <= 255 for c in scene.background)
    for o in scene.objects:
        assert lo <= o.r <= hi
        x0, y0, x1, y1 = o.bbox()
        assert 0 <= x0 and 0 <= y0 and x1 <= 223 and y1 <= 223
    for a, b in itertools.combinations(scene.objects, 2):
        assert math.dist((a.cx, a.cy), (b.cx, b.cy)) > a.r + b.r + 7


def test_render_draws_each_object_in_its_colour_on_the_background():
    scene = sw.Scene(
        (sw.ShapeObject("circle", "red", 60, 60, 30), sw.ShapeObject("square", "blue", 160, 60, 25),
         sw.ShapeObject("triangle", "yellow", 110, 160, 40)),
        background=(230, 231, 232),
    )
    img = np.asarray(scene.render())
    assert img.shape == (224, 224, 3)
    assert tuple(img[60, 60]) == sw.COLORS["red"]
    assert tuple(img[60, 160]) == sw.COLORS["blue"]
    assert tuple(img[190, 110]) == sw.COLORS["yellow"]  # near the triangle's base
    assert tuple(img[125, 80]) == (230, 231, 232)  # beside the triangle's apex
    assert tuple(img[5, 5]) == (230, 231, 232)
    assert scene.render(64).size == (64, 64)


def test_captions_list_objects_left_to_right():
    one = sw.Scene((sw.ShapeObject("circle", "red", 100, 100, 30),), (240, 240, 240))
    two = sw.Scene((sw.ShapeObject("square", "blue", 150, 60, 25), sw.ShapeObject("circle", "red", 50, 60, 25)), (240, 240, 240))
    three = sw.Scene(
        (sw.ShapeObject("triangle", "yellow", 180, 150, 25), sw.ShapeObject("circle", "red", 40, 60, 25),
         sw.ShapeObject("square", "blue", 110, 60, 25)),
        (240, 240, 240),
    )
    assert sw.caption(one) == "a red circle"
    assert sw.caption(two) == "a red circle and a blue square"
    assert sw.caption(three) == "a red circle, a blue square and a yellow triangle"
    assert sw.describe_reply(one) == "The image shows a red circle."
    assert sw.compare_reply(one, two) == "The first image shows a red circle. The second image shows a red circle and a blue square."


def test_zero_shot_labels():
    labels = sw.zero_shot_labels()
    assert len(labels) == 12 and len(set(labels)) == 12
    assert "a photo of a green triangle" in labels
    assert sw.zero_shot_labels("shape") == ["a photo of a circle", "a photo of a square", "a photo of a triangle"]
    assert len(sw.zero_shot_labels("color")) == 4
    single = next(s for s in SCENES if len(s.objects) == 1)
    assert sw.true_label(single) == f"a photo of a {single.objects[0].color} {single.objects[0].shape}"
    with pytest.raises(ValueError, match="single-object"):
        sw.true_label(next(s for s in SCENES if len(s.objects) == 2))
    with pytest.raises(ValueError, match="unknown label kind"):
        sw.zero_shot_labels("size")


TWO_RED_CIRCLES = sw.Scene(
    (sw.ShapeObject("circle", "red", 50, 50, 25), sw.ShapeObject("circle", "red", 150, 50, 25),
     sw.ShapeObject("square", "green", 100, 160, 25)),
    (240, 240, 240),
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("how many shapes are there?", "three"),
        ("How many shapes are there", "three"),
        ("HOW MANY CIRCLES ARE THERE?", "two"),
        ("how many triangles are there?", "zero"),
        ("what color is the square?", "green"),
        ("what shape is the green object?", "square"),
        ("is there a red circle?", "yes"),
        ("Is there a blue circle?", "no"),
        ("is there a triangle?", "no"),
        ("is there a square", "yes"),
    ],
)
def test_answers(question, expected):
    assert sw.answer(TWO_RED_CIRCLES, question) == expected


def test_questions_that_may_not_be_asked_are_refused():
    with pytest.raises(ValueError, match="exactly one circle"):
        sw.answer(TWO_RED_CIRCLES, "what color is the circle?")
    with pytest.raises(ValueError, match="exactly one red object"):
        sw.answer(TWO_RED_CIRCLES, "what shape is the red object?")
    with pytest.raises(ValueError, match="not a ShapesWorld question"):
        sw.answer(TWO_RED_CIRCLES, "what is the meaning of life?")
    asked = {qa.question for qa in sw.questions(TWO_RED_CIRCLES)}
    assert "what color is the circle?" not in asked and "what color is the square?" in asked
    assert "what shape is the red object?" not in asked and "what shape is the green object?" in asked


@pytest.mark.parametrize("scene", SCENES[:60])
def test_every_listed_question_has_a_consistent_answer_and_reply(scene):
    qas = sw.questions(scene)
    assert len(qas) == 1 + 3 + 12 + 3 + sum(1 for s in sw.SHAPES if sum(o.shape == s for o in scene.objects) == 1) + sum(
        1 for c in sw.COLORS if sum(o.color == c for o in scene.objects) == 1
    )
    for qa in qas:
        assert sw.answer(scene, qa.question) == qa.answer
        assert qa.answer in sw.ANSWER_SETS[qa.kind]
        reply = sw.chat_reply(qa.question, qa.answer)
        assert sw.find_answer_word(reply, qa.kind) == qa.answer, reply
        assert sw.reply_to(scene, qa.question.upper()) == reply


def test_sample_qa_covers_every_type_and_balances_yes_no():
    rng = random.Random(3)
    drawn = [sw.sample_qa(s, rng) for s in SCENES for _ in range(3)]
    kinds = {sw.answer_kind(qa.question, detailed=True) for qa in drawn}
    assert kinds == {"count", "shape_count", "color", "shape", "yes_no_cs", "yes_no_s"}
    yes_no = [qa.answer for qa in drawn if qa.kind == "yes_no"]
    assert 0.4 < yes_no.count("yes") / len(yes_no) < 0.6


def test_conversations_and_blip2_prompts():
    scene = SCENES[0]
    conv = sw.sample_conversation(scene, 5, rng=1)
    assert len(conv) == 5 and conv[0][0] in sw.DESCRIBE_PROMPTS
    assert conv[0][1] == sw.describe_reply(scene)
    for user, reply in conv:
        assert reply == sw.reply_to(scene, user)
    prompt = sw.blip2_prompt([("how many shapes are there?", "two")], "is there a square?")
    assert prompt == "Question: how many shapes are there? Answer: two. Question: is there a square? Answer:"


def test_invalid_scenes_are_refused():
    with pytest.raises(ValueError, match="1 to 3 objects"):
        sw.Scene((), (240, 240, 240))
    with pytest.raises(ValueError, match="unknown colour"):
        sw.Scene((sw.ShapeObject("circle", "purple", 50, 50, 25),), (240, 240, 240))
    with pytest.raises(ValueError, match="n_objects"):
        sw.sample_scene(1, n_objects=4)


def test_phrasings_public_and_held_out_are_disjoint_and_rephrasing_keeps_the_answer():
    assert not set(sw.PUBLIC_DESCRIBE_PROMPTS) & set(sw.HELDOUT_DESCRIBE_PROMPTS)
    assert not set(sw.PUBLIC_CAPTION_PREFIXES) & set(sw.HELDOUT_CAPTION_PREFIXES)
    assert set(sw.DESCRIBE_PROMPTS) <= set(sw.PUBLIC_DESCRIBE_PROMPTS) and sw.COMPARE_PROMPT in sw.PUBLIC_COMPARE_PROMPTS
    rng = random.Random(3)
    assert sw.rephrase("What color is the square?", rng) in {
        f.format(shape="square") for f in sw.QUESTION_PHRASINGS["color"]}
    assert sw.rephrase("is there a red circle", rng) in {
        f.format(color="red", shape="circle") for f in sw.QUESTION_PHRASINGS["yes_no_cs"]}
    seen = {sw.rephrase(qa.question, rng) for s in SCENES[:50] for qa in sw.questions(s)}
    assert not any("{" in q for q in seen) and len(seen) > 60
    with pytest.raises(ValueError, match="not a ShapesWorld question"):
        sw.rephrase("what is the meaning of life?", rng)
