"""The shipped toy BLIP captioning model: exact captions, conditional captions, the pipeline,
the lesson's API forms, tokenizer and image processor robustness, builder."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import BertTokenizer, BlipForConditionalGeneration, BlipProcessor, pipeline

from vlm_course import shapesworld as sw
from vlm_course.toybuild import blip, data

N = 48
TOY = {"name": "blip-captioning", "model_class": BlipForConditionalGeneration,
       "processor_class": BlipProcessor, "n": N, "offset": 201}  # see tests/toy/conftest.py


@pytest.fixture(scope="module")
def captions(model, processor, scenes):
    return blip.caption_images(model, processor, [s.render() for s in scenes])


def test_layout_is_the_real_classes(path, processor, model):
    tok = processor.tokenizer
    assert isinstance(tok, BertTokenizer)
    assert tok.bos_token == "[DEC]" and "[ENC]" in tok.extra_special_tokens
    text = model.config.text_config
    assert (text.bos_token_id, text.sep_token_id, text.pad_token_id) == (
        tok.bos_token_id, tok.sep_token_id, tok.pad_token_id)
    assert text.vocab_size >= len(tok)
    assert model.config.vision_config.hidden_size % 64 == 0 and text.hidden_size % 64 == 0
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6


def test_loading_prints_no_warnings(path, capfd):
    BlipForConditionalGeneration.from_pretrained(path)
    BlipProcessor.from_pretrained(path)
    err = capfd.readouterr().err.lower()
    for word in ("newly initialized", "missing", "unexpected", "deprecat", "not used"):
        assert word not in err


def test_unconditional_captions_meet_the_quality_bar(model, processor, bar_scenes, sampler, meets_bar):
    captions = blip.caption_images(model, processor, [s.render() for s in bar_scenes])
    meets_bar("blip-captioning", "caption_exact", [c == s.caption for c, s in zip(captions, bar_scenes, strict=True)],
              sampler)


def test_conditional_captions_continue_the_prompt(model, processor, scenes):
    prompt = "a photography of"
    images = [s.render() for s in scenes[:24]]
    cond = blip.caption_images(model, processor, images, prompt)
    assert all(c.startswith(prompt) for c in cond)
    assert sum(c == f"{prompt} {s.caption}" for c, s in zip(cond, scenes, strict=False)) / len(cond) >= 0.8


def test_a_different_image_changes_the_caption(captions, scenes):
    pairs = [(a, b) for a, b, sa, sb in zip(captions, captions[1:], scenes, scenes[1:], strict=False)
             if sa.caption != sb.caption]
    assert sum(a != b for a, b in pairs) / len(pairs) >= 0.9


def test_lesson_form_single_image(model, processor):
    scene = sw.Scene((sw.ShapeObject("circle", "red", 60, 112, 35), sw.ShapeObject("square", "blue", 160, 100, 30)),
                     (240, 240, 240))
    inputs = processor(images=scene.render(), return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=30)
    assert processor.decode(out[0], skip_special_tokens=True) == "a red circle and a blue square"


def test_pipeline_image_text_to_text(path, model, processor):
    captioner = pipeline("image-text-to-text", model=path)
    images = [s.render() for s in data.eval_scenes(4, offset=202)]
    expected = blip.caption_images(model, processor, images)
    assert [captioner(images=im, text="")[0]["generated_text"] for im in images] == expected
    cond = captioner(images=images[0], text="a photography of")[0]["generated_text"]
    assert cond == blip.caption_images(model, processor, images[:1], "a photography of")[0]


def test_tokenizer_accepts_any_text(model, processor):
    scene = data.eval_scenes(1, offset=203)[0]
    for prompt in ["Ünïcödé café 東京 🦓🚀", "What's a zebra-like thing?!", "word " * 400]:
        ids = processor.tokenizer(prompt, truncation=True).input_ids
        assert len(ids) <= processor.tokenizer.model_max_length
        inputs = processor(images=scene.render(), text=prompt, truncation=True, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=30)
        assert isinstance(processor.decode(out[0], skip_special_tokens=True), str)
    pieces = processor.tokenizer.tokenize("Zebras jump quickly")
    assert "[UNK]" not in pieces and pieces[0] == "z"


def test_processor_accepts_any_image_size_and_mode(processor):
    for image in [Image.new("L", (100, 50), 200), Image.new("RGBA", (500, 300)), Image.new("RGB", (32, 32))]:
        assert processor(images=image, return_tensors="pt").pixel_values.shape == (1, 3, 64, 64)


def test_fast_pixel_values_match_the_processor(processor):
    images = [s.render() for s in data.eval_scenes(4, offset=204)]
    fast = blip.pixel_values(images, processor.image_processor)
    slow = processor(images=images, return_tensors="pt").pixel_values
    assert torch.allclose(fast, slow, atol=0.02)


def test_smoke_build_loads(tmp_path):
    info = blip.build("blip-captioning", tmp_path, smoke=True, deps={})
    assert info["steps"] == data.SMOKE_STEPS
    model = BlipForConditionalGeneration.from_pretrained(tmp_path)
    processor = BlipProcessor.from_pretrained(tmp_path)
    assert len(blip.caption_images(model, processor, [data.eval_scenes(1)[0].render()])) == 1
    assert "## Measured scores" in (tmp_path / "README.md").read_text()

