"""The shipped toy LLaVA (LLaVA-1.5 style): quality on fresh scenes, the lessons' API forms, tokenizer, builder."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    LlamaTokenizer,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    pipeline,
)

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import data, llava

N = 100  # scenes per quality metric (the model card measures 200)
TOY = {"name": "llava", "model_class": LlavaForConditionalGeneration,
       "n": N, "offset": 201}  # see tests/toy/conftest.py


def _describe(scene: sw.Scene, prompt: str = "What is shown in this image?") -> list[dict]:
    return [llava.user_message(prompt, [scene.render()])]


def test_layout_matches_the_real_checkpoint(path, processor, model):
    cfg = model.config
    assert isinstance(processor, LlavaProcessor)
    # transformers 5 loads llava tokenizers as TokenizersBackend (as for llava-hf); the saved class is Llama's.
    assert LlamaTokenizer.from_pretrained(path)("USER: <image>\nHi 🐶")["input_ids"] == processor.tokenizer(
        "USER: <image>\nHi 🐶")["input_ids"]
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == cfg.image_token_index
    assert processor.patch_size == cfg.vision_config.patch_size
    assert processor.vision_feature_select_strategy == cfg.vision_feature_select_strategy == "default"
    assert processor.num_additional_image_tokens == 1 and cfg.vision_feature_layer == -2
    assert cfg.text_config.model_type == "llama" and cfg.text_config.max_position_embeddings >= 1024
    for width in (cfg.text_config.hidden_size, cfg.text_config.intermediate_size, cfg.vision_config.hidden_size):
        assert width % 64 == 0
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6
    prompt = processor.apply_chat_template(_describe(sw.sample_scene(0)), add_generation_prompt=True)
    assert prompt == "USER: <image>\nWhat is shown in this image? ASSISTANT:"


def test_lesson_forms_agree_and_the_image_matters(path, processor, model):
    red_circle = sw.Scene((sw.ShapeObject("circle", "red", 112, 112, 50),), (240, 240, 240))
    two = sw.Scene((sw.ShapeObject("square", "blue", 60, 80, 35), sw.ShapeObject("triangle", "yellow", 160, 150, 35)),
                   (230, 245, 235))
    replies = []
    for scene in (red_circle, two):
        conversation = _describe(scene)
        inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        same = processor(images=scene.render(), text=prompt, return_tensors="pt")
        assert torch.equal(inputs["input_ids"], same["input_ids"])
        assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == _patches(model)
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
        replies.append(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert replies[0] == "The image shows a red circle."
    assert replies[1].startswith("The image shows a blue square") and replies[1] != replies[0]
    pipe = pipeline("image-text-to-text", model=str(path))
    result = pipe(text=_describe(red_circle), return_full_text=False)
    assert result[0]["generated_text"].strip() == replies[0]


def test_multi_turn_history_and_two_images(processor, model):
    scenes = data.eval_scenes(12, offset=202)
    rng = random.Random(6)
    convs, truth = [], []
    for scene in scenes:
        history = sw.sample_conversation(scene, 2, rng)
        qa = sw.sample_qa(scene, rng)
        messages = []
        for i, (q, a) in enumerate(history):
            messages.append(llava.user_message(q, [scene.render()] if i == 0 else []))
            messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        messages.append(llava.user_message(qa.question.capitalize(), []))
        convs.append(messages)
        truth.append(qa)
    replies = llava.chat(processor, model, convs)
    # History in the prompt works (well above chance); the quality bar itself is asserted above.
    assert sum(sw.find_answer_word(r, qa.kind) == qa.answer for r, qa in zip(replies, truth, strict=True)) >= 7
    # Two images in one user turn: one patch grid each, generation runs.
    pair = [llava.user_message(sw.COMPARE_PROMPT, [scenes[0].render(), scenes[1].render()])]
    inputs = processor.apply_chat_template(pair, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 2 * _patches(model)
    assert model.generate(**inputs, max_new_tokens=5, do_sample=False).shape[1] > inputs["input_ids"].shape[1]


def test_thirty_turns_fit_the_context(processor, model):
    scene = data.eval_scenes(1, offset=203)[0]
    turns = sw.sample_conversation(scene, 30, random.Random(7))
    messages = []
    for i, (q, a) in enumerate(turns):
        messages.append(llava.user_message(q, [scene.render()] if i == 0 else []))
        messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
    ids = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    assert ids.shape[1] < model.config.text_config.max_position_embeddings - _patches(model)


def test_tokenizer_accepts_any_text(processor):
    tok = processor.tokenizer
    for text in ["Ünïcödé façade — naïve 北京", "emoji 🐶🚗✨", "word " * 500, "WHAT COLOUR IS THE SQUARE", ""]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    # ShapesWorld text takes about one token per word.
    assert len(tok("The image shows a red circle, a blue square and a yellow triangle.")["input_ids"]) <= 16


@pytest.mark.slow
def test_4bit_generation_on_cpu(path, processor):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    quantized = LlavaForConditionalGeneration.from_pretrained(
        path, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    )
    inputs = processor.apply_chat_template(_describe(sw.sample_scene(3)), add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    out = quantized.generate(**inputs, max_new_tokens=30, do_sample=False)
    assert processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip().startswith("The")


@pytest.mark.slow
def test_smoke_build_loads_with_the_shipped_layout(tmp_path, path):
    info = llava.build("llava", tmp_path, smoke=True, deps={"clip": toy.model_path("clip")})
    assert [s["steps"] for s in info["stages"]] == [3] * len(llava.PLANS["llava"]["stages"])
    built = LlavaForConditionalGeneration.from_pretrained(tmp_path).config.to_dict()
    shipped = LlavaForConditionalGeneration.from_pretrained(path).config.to_dict()
    for key in ("image_token_index", "vision_feature_layer", "image_seq_length"):
        assert built[key] == shipped[key]
    assert built["text_config"]["vocab_size"] == shipped["text_config"]["vocab_size"]
    assert (tmp_path / "chat_template.jinja").read_text() == (path / "chat_template.jinja").read_text()
    assert "describe_exact" in (tmp_path / "README.md").read_text()


def test_builder_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-toy-models --only clip"):
        llava.build("llava", tmp_path, deps={})
    with pytest.raises(KeyError, match="llava-next"):
        llava.build("blip2", tmp_path, deps={})


def _patches(model) -> int:
    """Image tokens of one picture: the vision tower's patch grid (CLS dropped)."""
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2

