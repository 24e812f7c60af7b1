"""What the toy LLaVA and LLaVA-NeXT share: the describe / answer / held-out-phrasing bars on every spec
sampler (``meets_bar``), and the wordings people use (the lists in ``vlm_course.shapesworld``): public
describe phrasings, the hand-typed raw prompt, other question wordings, a second image in a later turn and
the docs' compare wordings. Those are not bars of their own; each is checked against the model card's
figure (``matches_card``), so a checkpoint that no longer does what its card says fails."""

from __future__ import annotations

import random

import pytest
from transformers import AutoProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import data, llava

N = 100  # 50 scenes flagged a checkpoint whose 550-scene rate matched its card (P = 0.04); 100 narrow the noise
CLASSES = {"llava": LlavaForConditionalGeneration, "llava-next": LlavaNextForConditionalGeneration}


def _load(name: str):
    path = toy.model_path(name)
    return AutoProcessor.from_pretrained(path), CLASSES[name].from_pretrained(path).eval()


@pytest.fixture(scope="module", params=list(CLASSES))
def chat_toy(request):
    return request.param, *_load(request.param)


@pytest.fixture(scope="module")
def scenes():
    return data.eval_scenes(2 * N, offset=401)


@pytest.fixture(scope="module")
def sampled(sampler):
    """Fresh scenes of each spec sampler for the bars."""
    return data.eval_scenes(100, offset=201, sampler=sampler)


def test_describe_meets_the_quality_bar(chat_toy, sampled, sampler, meets_bar):
    name, processor, model = chat_toy
    meets_bar(name, "describe_exact", llava.describe_rights(processor, model, sampled, sw.DESCRIBE_PROMPTS), sampler)


def test_held_out_phrasings_meet_the_quality_bar(chat_toy, sampled, sampler, meets_bar):
    name, processor, model = chat_toy
    rights = llava.describe_rights(processor, model, sampled, sw.HELDOUT_DESCRIBE_PROMPTS)
    meets_bar(name, "describe_exact_heldout_phrasings", rights, sampler)


def test_questions_meet_the_quality_bar(chat_toy, sampled, sampler, meets_bar):
    name, processor, model = chat_toy
    meets_bar(name, "answer_word", llava.answer_rights(processor, model, sampled, random.Random(5)), sampler)


def test_public_describe_phrasings(chat_toy, scenes, matches_card):
    name, processor, model = chat_toy
    rights = llava.describe_rights(processor, model, scenes[:N], sw.PUBLIC_DESCRIBE_PROMPTS[2:])
    matches_card(name, "describe_exact_public_phrasings", rights)


def test_hand_typed_raw_prompt(chat_toy, scenes, matches_card):
    name, processor, model = chat_toy
    matches_card(name, "describe_exact_raw_prompt", llava.describe_rights(processor, model, scenes[:N], sw.DESCRIBE_PROMPTS,
                                                                         raw=name))


def test_other_question_wordings(chat_toy, scenes, matches_card):
    name, processor, model = chat_toy
    rights = llava.answer_rights(processor, model, scenes[:N], random.Random(11), reword=True)
    matches_card(name, "answer_word_other_wordings", rights)


def test_a_second_image_in_a_later_turn(chat_toy, scenes, matches_card):
    name, processor, model = chat_toy
    rights = llava.later_image_rights(processor, model, scenes[:N], scenes[N:], random.Random(12))
    matches_card(name, "later_image_right", rights)


def test_the_docs_compare_wordings(scenes, matches_card):
    processor, model = _load("llava-next")  # two-image compares are LLaVA-NeXT's task in the course
    rights = llava.compare_rights(processor, model, scenes[:N], scenes[N:], sw.PUBLIC_COMPARE_PROMPTS[1:])
    matches_card("llava-next", "compare_exact_public_phrasings", rights)
