"""The shipped toy LLaVA-NeXT (v1.6-Mistral style): any-res layout, quality on fresh scenes, compare, API forms."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from transformers import (
    AutoProcessor,
    LlamaTokenizer,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    pipeline,
)

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.anyres import tile_layout
from vlm_course.sizes import specs
from vlm_course.toybuild import data, llava

N = 100  # scenes per quality metric (the model card measures 200)
TOY = {"name": "llava-next", "model_class": LlavaNextForConditionalGeneration,
       "n": N, "offset": 301}  # see tests/toy/conftest.py


def _ask(prompt: str, *images: Image.Image) -> list[dict]:
    return [llava.user_message(prompt, images)]


def _count_image_tokens(processor, image: Image.Image) -> int:
    ids = processor(images=image, text="<image>", return_tensors="pt")["input_ids"]
    return int((ids == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())


def test_layout_matches_the_real_checkpoint(path, processor, model):
    cfg = model.config
    assert isinstance(processor, LlavaNextProcessor)
    # transformers 5 loads llava tokenizers as TokenizersBackend (as for llava-hf); the saved class is Llama's.
    assert LlamaTokenizer.from_pretrained(path)("USER: <image>\nHi 🐶")["input_ids"] == processor.tokenizer(
        "USER: <image>\nHi 🐶")["input_ids"]
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == cfg.image_token_index
    assert processor.patch_size == cfg.vision_config.patch_size
    assert processor.vision_feature_select_strategy == cfg.vision_feature_select_strategy == "default"
    assert cfg.text_config.model_type == "mistral" and cfg.text_config.max_position_embeddings >= 1024
    assert processor.image_processor.image_grid_pinpoints == cfg.image_grid_pinpoints
    for width in (cfg.text_config.hidden_size, cfg.text_config.intermediate_size, cfg.vision_config.hidden_size):
        assert width % 64 == 0
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6
    prompt = processor.apply_chat_template(_ask("What is shown in this image?", sw.sample_scene(0).render()),
                                           add_generation_prompt=True)
    assert prompt == "[INST] <image>\nWhat is shown in this image? [/INST]"


def test_any_res_uses_llava_v16s_grid_scaled_to_the_toy_tower(processor, model):
    tile = model.config.vision_config.image_size
    real = specs.config("llava-hf/llava-v1.6-mistral-7b-hf")
    side = real.vision_config.image_size
    assert model.config.image_grid_pinpoints == [[h // side * tile, w // side * tile] for h, w in real.image_grid_pinpoints]
    assert [[1, 2], [2, 1], [2, 2], [3, 1], [1, 3]] == [[h // side, w // side] for h, w in real.image_grid_pinpoints]


def test_any_res_tiles_follow_the_image_shape(processor, model):
    vision = model.config.vision_config
    pinpoints = model.config.image_grid_pinpoints
    grid = vision.image_size // vision.patch_size
    square = sw.sample_scene(0).render()
    layout = tile_layout((square.height, square.width), pinpoints, vision.image_size)
    # A square scene gets a 2 x 2 grid of tiles: base view (grid x grid features), then the tiles'
    # (2 grid) x (2 grid) features with a newline after each row.
    assert (layout.rows, layout.cols) == (2, 2)
    assert _count_image_tokens(processor, square) == grid * grid + 2 * grid * (2 * grid + 1)
    panorama = Image.new("RGB", (1000, 300), "white")
    layout = tile_layout((panorama.height, panorama.width), pinpoints, vision.image_size)
    assert (layout.rows, layout.cols) == (1, 3)
    views = processor.image_processor(images=panorama, return_tensors="pt").pixel_values.shape[1]
    assert views == layout.views == 4


def test_shares_the_toy_llavas_vision_tower_shape_and_tokenizer(processor, model):
    base = LlavaForConditionalGeneration.from_pretrained(toy.model_path("llava"))
    base_processor = AutoProcessor.from_pretrained(toy.model_path("llava"))
    assert model.config.vision_config.to_dict() == base.config.vision_config.to_dict()
    assert processor.tokenizer.get_vocab() == base_processor.tokenizer.get_vocab()
    assert model.config.image_token_index == base.config.image_token_index


@pytest.fixture(scope="module")
def compare_rights(processor, model, bar_scenes, toy_tester, sampler):
    others = data.eval_scenes(N, offset=toy_tester.offset + 1, sampler=sampler)
    return llava.compare_rights(processor, model, bar_scenes, others)


def test_compare_meets_the_quality_bar(compare_rights, sampler, meets_bar):
    meets_bar("llava-next", "compare_exact", compare_rights, sampler)


def test_compare_well_above_chance(compare_rights):
    # Chance is ~0 for an exact two-image compare.
    assert sum(compare_rights) / len(compare_rights) >= 0.35


def test_lesson_forms_agree_and_the_image_matters(path, processor, model):
    red_circle = sw.Scene((sw.ShapeObject("circle", "red", 112, 112, 50),), (240, 240, 240))
    two = sw.Scene((sw.ShapeObject("square", "blue", 60, 80, 35), sw.ShapeObject("triangle", "yellow", 160, 150, 35)),
                   (230, 245, 235))
    replies = []
    for scene in (red_circle, two):
        conversation = _ask("What is shown in this image?", scene.render())
        inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        same = processor(images=scene.render(), text=prompt, return_tensors="pt")
        assert torch.equal(inputs["input_ids"], same["input_ids"])
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
        replies.append(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert replies[0] == "The image shows a red circle."
    assert replies[1].startswith("The image shows a blue square") and replies[1] != replies[0]
    pipe = pipeline("image-text-to-text", model=str(path))
    result = pipe(text=_ask("What is shown in this image?", red_circle.render()), return_full_text=False)
    assert result[0]["generated_text"].strip() == replies[0]


def test_multi_turn_history(processor, model):
    scenes = data.eval_scenes(12, offset=303)
    rng = random.Random(9)
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


def test_tokenizer_accepts_any_text(processor):
    tok = processor.tokenizer
    for text in ["Ünïcödé façade — naïve 北京", "emoji 🐶🚗✨", "word " * 500, ""]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.slow
def test_smoke_build_loads_with_the_shipped_layout(tmp_path, path):
    info = llava.build("llava-next", tmp_path, smoke=True, deps={"llava": toy.model_path("llava")})
    assert [s["steps"] for s in info["stages"]] == [3] * len(llava.PLANS["llava-next"]["stages"])
    built = LlavaNextForConditionalGeneration.from_pretrained(tmp_path).config.to_dict()
    shipped = LlavaNextForConditionalGeneration.from_pretrained(path).config.to_dict()
    for key in ("image_token_index", "image_grid_pinpoints", "vision_feature_layer"):
        assert built[key] == shipped[key]
    assert (tmp_path / "chat_template.jinja").read_text() == (path / "chat_template.jinja").read_text()
    assert "compare_exact" in (tmp_path / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="build-toy-models --only llava"):
        llava.build("llava-next", tmp_path / "again", deps={})

