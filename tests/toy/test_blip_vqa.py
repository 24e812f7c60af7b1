"""The shipped toy BLIP VQA model: one-word answers over every question type, batched questions,
phrasing robustness, the lesson's API form, tokenizer, builder."""

from __future__ import annotations

import pytest
from transformers import BertTokenizer, BlipForQuestionAnswering, BlipProcessor

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import blip, data

N = 40
TOY = {"name": "blip-vqa", "model_class": BlipForQuestionAnswering,
       "processor_class": BlipProcessor, "n": N, "offset": 301}  # see tests/toy/conftest.py


@pytest.fixture(scope="module")
def results(model, processor, scenes):
    return blip.vqa_hits(model, processor, scenes, seed=301)


def test_layout_is_the_real_classes(path, processor, model):
    tok = processor.tokenizer
    assert isinstance(tok, BertTokenizer) and tok.bos_token == "[DEC]"
    text = model.config.text_config
    assert (text.bos_token_id, text.sep_token_id, text.pad_token_id) == (
        tok.bos_token_id, tok.sep_token_id, tok.pad_token_id)
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6


def test_loading_prints_no_warnings(path, capfd):
    BlipForQuestionAnswering.from_pretrained(path)
    BlipProcessor.from_pretrained(path)
    err = capfd.readouterr().err.lower()
    for word in ("newly initialized", "missing", "unexpected", "deprecat", "not used"):
        assert word not in err


def test_answers_meet_the_quality_bar(model, processor, bar_scenes, sampler, meets_bar):
    results = blip.vqa_hits(model, processor, bar_scenes, seed=301)
    meets_bar("blip-vqa", "vqa_accuracy", [t == a for pairs in results.values() for t, a in pairs], sampler)


def test_every_question_type_mostly_right(results):
    for kind, pairs in results.items():
        assert pairs, f"no {kind} questions were asked"
        assert sum(t == a for t, a in pairs) / len(pairs) >= 0.75, (kind, pairs)


def test_a_different_image_changes_the_answer(results):
    counts = results["count"]
    pairs = [(p1, p2) for (t1, p1), (t2, p2) in zip(counts, counts[1:], strict=False) if t1 != t2]
    assert sum(p1 != p2 for p1, p2 in pairs) / len(pairs) >= 0.85


def test_lesson_form_and_batched_questions(model, processor):
    scene = sw.Scene((sw.ShapeObject("circle", "red", 60, 112, 35), sw.ShapeObject("square", "blue", 160, 100, 30)),
                     (240, 240, 240))
    image = scene.render()
    inputs = processor(images=image, text="How many shapes are there?", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5)
    assert processor.decode(out[0], skip_special_tokens=True) == "two"
    questions = ["What color is the circle?", "what shape is the blue object", "Is there a red circle?",
                 "IS THERE A TRIANGLE", "How many squares are there?"]
    batched = blip.answer_questions(model, processor, image, questions)
    assert batched == ["red", "square", "yes", "no", "one"]
    # padding in a batch does not change an answer
    assert batched == [blip.answer_questions(model, processor, image, [q])[0] for q in questions]


def test_phrasing_does_not_matter(model, processor):
    image = data.eval_scenes(1, offset=302)[0].render()
    forms = ["how many shapes are there?", "How many shapes are there", "HOW MANY SHAPES ARE THERE?",
             "How Many Shapes Are There?"]
    assert len(set(blip.answer_questions(model, processor, image, forms))) == 1


def test_tokenizer_accepts_any_text(model, processor):
    image = data.eval_scenes(1, offset=303)[0].render()
    questions = ["Ünïcödé café 東京 🦓🚀?", "What's the zebra-like thing?!", "why " * 400]
    inputs = processor(images=[image] * 3, text=questions, padding=True, truncation=True, return_tensors="pt")
    assert inputs.input_ids.shape[1] <= processor.tokenizer.model_max_length
    out = model.generate(**inputs, max_new_tokens=5)
    assert len(processor.batch_decode(out, skip_special_tokens=True)) == 3


def test_smoke_build_loads(tmp_path):
    deps = {"blip-captioning": toy.model_path("blip-captioning")}
    info = blip.build("blip-vqa", tmp_path, smoke=True, deps=deps)
    assert info["steps"] == data.SMOKE_STEPS
    model = BlipForQuestionAnswering.from_pretrained(tmp_path)
    processor = BlipProcessor.from_pretrained(tmp_path)
    image = data.eval_scenes(1)[0].render()
    assert len(blip.answer_questions(model, processor, image, ["how many shapes are there?"])) == 1


def test_build_needs_the_captioner(tmp_path):
    with pytest.raises(KeyError, match="blip-vqa starts from the trained toy blip-captioning"):
        blip.build("blip-vqa", tmp_path, smoke=True, deps={})
