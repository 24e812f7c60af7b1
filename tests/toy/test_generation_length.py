"""A caller's ``max_length`` / ``max_new_tokens`` decide how long the generative toys write, as with the
real checkpoints (whose generation configs set no length)."""

from __future__ import annotations

import json

import pytest
from transformers import (
    AutoProcessor,
    Blip2ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
)

from vlm_course import shapesworld as sw
from vlm_course import toy

GENERATIVE = {"llava": LlavaForConditionalGeneration, "llava-next": LlavaNextForConditionalGeneration,
              "blip2": Blip2ForConditionalGeneration}


def _inputs(name: str, processor):
    image = sw.Scene((sw.ShapeObject("circle", "red", 60, 60, 30), sw.ShapeObject("square", "blue", 150, 150, 40),
                      sw.ShapeObject("triangle", "green", 60, 170, 30)), (240, 240, 240)).render()
    if name == "blip2":
        return processor(images=image, return_tensors="pt")  # a caption: longer than the limits below
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    return processor(images=image, text=prompt, return_tensors="pt")


@pytest.mark.parametrize("name", list(GENERATIVE))
def test_callers_length_limits_are_respected(name):
    path = toy.model_path(name)
    for config in ("generation_config.json", "config.json"):
        assert "max_new_tokens" not in json.dumps(json.loads((path / config).read_text())), config
    processor = AutoProcessor.from_pretrained(path)
    model = GENERATIVE[name].from_pretrained(path).eval()
    inputs = _inputs(name, processor)
    # BLIP-2 captioning: generate() itself puts the query-token placeholders and BOS before the caption.
    prompt_length = inputs["input_ids"].shape[1] if "input_ids" in inputs else model.config.num_query_tokens + 1
    assert model.generate(**inputs, max_length=prompt_length + 2, do_sample=False).shape[1] == prompt_length + 2
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] == prompt_length + 3
    # With no limit from the caller, the default of 20 new tokens (the model stops earlier at </s>).
    assert prompt_length < model.generate(**inputs, do_sample=False).shape[1] <= prompt_length + 20
