"""The shipped toy CLIP: zero-shot quality, retrieval, the lesson's API forms, tokenizer, builder."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer, pipeline

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import clip, data

N = 60


@pytest.fixture(scope="module")
def path():
    return toy.model_path("clip")


@pytest.fixture(scope="module")
def model(path):
    return CLIPModel.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def processor(path):
    return CLIPProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def singles():
    return data.eval_scenes(N, n_objects=1, offset=101)


def test_layout_is_the_real_classes(path, processor, model):
    assert isinstance(processor.tokenizer, CLIPTokenizer)
    assert model.config.vision_config.hidden_size % 64 == 0
    assert model.config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6


def test_zero_shot_top1_over_12_labels(model, processor, singles):
    assert clip.zero_shot_accuracy(model, processor, singles, "color_shape", padding=True) >= 0.95


@pytest.mark.parametrize("kind", ["shape", "color"])
def test_shape_and_colour_label_sets_mostly_right(model, processor, singles, kind):
    assert clip.zero_shot_accuracy(model, processor, singles, kind, padding=True) >= 0.8


def test_lesson_form_and_image_matters(model, processor):
    labels = sw.zero_shot_labels()
    red_circle = sw.Scene((sw.ShapeObject("circle", "red", 112, 112, 50),), (240, 240, 240))
    blue_square = sw.Scene((sw.ShapeObject("square", "blue", 112, 112, 50),), (240, 240, 240))
    inputs = processor(text=labels, images=[red_circle.render(), blue_square.render()],
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
        feats = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    probs = out.logits_per_image.softmax(dim=1)
    assert labels[probs[0].argmax()] == "a photo of a red circle"
    assert labels[probs[1].argmax()] == "a photo of a blue square"
    assert torch.allclose(torch.nn.functional.normalize(feats, dim=-1), out.image_embeds, atol=1e-5)


def test_text_to_image_retrieval_precision_at_5(model, processor):
    gallery = data.eval_scenes(120, offset=102)
    assert clip.retrieval_precision_at_5(model, processor, gallery, padding=True) >= 0.8


def test_pipeline_zero_shot(path):
    classifier = pipeline("zero-shot-image-classification", model=path)
    scenes = data.eval_scenes(8, n_objects=1, offset=103)
    labels = sw.zero_shot_labels()
    correct = sum(classifier(s.render(), candidate_labels=labels)[0]["label"] == sw.true_label(s) for s in scenes)
    assert correct >= 7


def test_tokenizer_accepts_any_text(model, processor):
    texts = ["Ünïcödé façade — naïve 北京", "emoji 🐶🚗✨", "word " * 200, ""]
    inputs = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    assert inputs["input_ids"].shape[1] <= 77
    assert processor.tokenizer.unk_token_id not in processor.tokenizer("🐶 北京")["input_ids"][1:-1]
    assert processor.tokenizer.decode(processor.tokenizer("a photo of a 🐶")["input_ids"], skip_special_tokens=True) == "a photo of a 🐶"
    with torch.no_grad():
        assert model.get_text_features(**inputs).pooler_output.shape == (4, 64)


def test_soft_loss_is_clips_own_loss_when_texts_differ(model, processor):
    scenes = data.eval_scenes(3, n_objects=2, offset=104)
    inputs = processor(text=[f"a photo of {s.caption}" for s in scenes], images=[s.render() for s in scenes],
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    assert torch.allclose(clip.soft_clip_loss(out.logits_per_text, torch.eye(3)), out.loss, atol=1e-5)


def test_match_matrix_counts_repeated_and_contained_labels():
    red_circle = sw.Scene((sw.ShapeObject("circle", "red", 60, 60, 30),), (240, 240, 240))
    two = sw.Scene((sw.ShapeObject("circle", "red", 50, 60, 30), sw.ShapeObject("square", "blue", 150, 150, 30)),
                   (240, 240, 240))
    keys = [("caption", "a red circle"), ("caption", two.caption), ("shape", "square")]
    assert clip.match_matrix(keys, [red_circle, two]).tolist() == [[1, 1], [0, 1], [0, 1]]


@pytest.mark.slow
def test_smoke_build_loads(tmp_path):
    info = clip.build("clip", tmp_path, smoke=True, deps={})
    assert info["steps"] == data.SMOKE_STEPS
    model = CLIPModel.from_pretrained(tmp_path)
    processor = CLIPProcessor.from_pretrained(tmp_path)
    assert model.config.projection_dim == 64
    assert (tmp_path / "README.md").read_text().count("zero-shot top-1") == 3
    assert processor(text=["a photo of a red circle"], return_tensors="pt")["input_ids"].shape[0] == 1
