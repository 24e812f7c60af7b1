"""The shipped toy SigLIP: zero-shot quality, independent sigmoid scores, API forms, tokenizer, builder."""

from __future__ import annotations

import pytest
import torch
from transformers import SiglipModel, SiglipProcessor, SiglipTokenizer, pipeline

from vlm_course import shapesworld as sw
from vlm_course.toybuild import clip, data, siglip

N = 60
TOY = {"name": "siglip", "model_class": SiglipModel,
       "processor_class": SiglipProcessor, "n": N, "offset": 201, "n_objects": 1}  # see tests/toy/conftest.py


@pytest.fixture(scope="module")
def label_probs(model, processor, scenes):
    """Sigmoid scores of the 12 labels and of two labels that fit no scene."""
    images = [s.render() for s in scenes]
    labels = sw.zero_shot_labels() + clip.NONE_FIT_LABELS
    return torch.sigmoid(clip.zero_shot_scores(model, processor, images, labels, "max_length"))


def test_layout_is_the_real_classes(path, processor, model):
    assert isinstance(processor.tokenizer, SiglipTokenizer)
    assert processor.tokenizer.model_max_length == 64
    assert model.config.vision_config.hidden_size % 64 == 0
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6


def test_zero_shot_top1_over_12_labels(model, processor, bar_scenes, sampler, meets_bar):
    labels = sw.zero_shot_labels()
    logits = clip.zero_shot_scores(model, processor, [s.render() for s in bar_scenes], labels, "max_length")
    rights = [labels[i] == sw.true_label(s) for i, s in zip(logits.argmax(dim=1).tolist(), bar_scenes, strict=True)]
    meets_bar("siglip", "zero-shot top-1, 12 colour-shape labels", rights, sampler)


def test_matching_label_scores_high_and_none_fit_labels_low(label_probs, scenes):
    labels = sw.zero_shot_labels()
    truth = torch.tensor([labels.index(sw.true_label(s)) for s in scenes])
    true_p = label_probs[torch.arange(len(scenes)), truth]
    assert (true_p > 0.5).float().mean() >= 0.8
    assert label_probs[:, 12:].max() < 0.1  # "a photo of a dog" / "a photo of a car"


def test_scores_are_independent_sigmoids_not_a_softmax(label_probs):
    assert not torch.allclose(label_probs[:, :12].sum(dim=1), torch.ones(len(label_probs)), atol=0.05)


@pytest.mark.parametrize("kind", ["shape", "color"])
def test_shape_and_colour_label_sets_mostly_right(model, processor, scenes, kind):
    assert clip.zero_shot_accuracy(model, processor, scenes, kind, padding="max_length") >= 0.8


def test_lesson_form_and_image_matters(model, processor):
    labels = sw.zero_shot_labels()
    green_triangle = sw.Scene((sw.ShapeObject("triangle", "green", 112, 112, 50),), (240, 240, 240))
    yellow_circle = sw.Scene((sw.ShapeObject("circle", "yellow", 112, 112, 50),), (240, 240, 240))
    inputs = processor(text=labels, images=[green_triangle.render(), yellow_circle.render()],
                       padding="max_length", truncation=True, return_tensors="pt")
    assert inputs["input_ids"].shape == (12, 64)
    with torch.no_grad():
        out = model(**inputs)
        feats = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    assert labels[out.logits_per_image[0].argmax()] == "a photo of a green triangle"
    assert labels[out.logits_per_image[1].argmax()] == "a photo of a yellow circle"
    assert torch.allclose(torch.nn.functional.normalize(feats, dim=-1), out.image_embeds, atol=1e-5)


def test_pipeline_zero_shot(path):
    classifier = pipeline("zero-shot-image-classification", model=path)
    scenes = data.eval_scenes(8, n_objects=1, offset=203)
    labels = sw.zero_shot_labels()
    correct = sum(classifier(s.render(), candidate_labels=labels)[0]["label"] == sw.true_label(s) for s in scenes)
    assert correct >= 7


def test_tokenizer_accepts_any_text(model, processor):
    texts = ["Ünïcödé façade — naïve 北京", "emoji 🐶🚗✨", "word " * 200, ""]
    inputs = processor(text=texts, padding="max_length", truncation=True, return_tensors="pt")
    assert inputs["input_ids"].shape == (4, 64)
    with torch.no_grad():
        assert model.get_text_features(**inputs).pooler_output.shape == (4, 64)


def test_sigmoid_loss_is_siglips_own_loss_when_texts_differ(model, processor):
    scenes = data.eval_scenes(3, n_objects=2, offset=204)
    inputs = processor(text=[f"a photo of {s.caption}" for s in scenes], images=[s.render() for s in scenes],
                       padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    assert torch.allclose(siglip.sigmoid_loss(out.logits_per_text, torch.eye(3)), out.loss, atol=1e-4)


@pytest.mark.slow
def test_smoke_build_loads(tmp_path):
    info = siglip.build("siglip", tmp_path, smoke=True, deps={})
    assert info["steps"] == data.SMOKE_STEPS
    model = SiglipModel.from_pretrained(tmp_path)
    processor = SiglipProcessor.from_pretrained(tmp_path)
    assert model.logit_bias.item() == pytest.approx(-10, abs=0.1)  # the paper's init, 3 steps later
    ids = processor(text=["a photo of a red circle"], padding="max_length", return_tensors="pt")["input_ids"]
    assert ids.shape == (1, 64)
