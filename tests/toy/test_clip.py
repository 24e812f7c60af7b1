"""The shipped toy CLIP: zero-shot quality, retrieval, the lesson's API forms, tokenizer, builder."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer, pipeline

from vlm_course import shapesworld as sw
from vlm_course.toybuild import clip, data

N = 60
TOY = {"name": "clip", "model_class": CLIPModel,
       "processor_class": CLIPProcessor, "n": N, "offset": 101, "n_objects": 1}  # see tests/toy/conftest.py


def test_layout_is_the_real_classes(path, processor, model):
    assert isinstance(processor.tokenizer, CLIPTokenizer)
    assert model.config.vision_config.hidden_size % 64 == 0
    assert model.config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    assert sum(f.stat().st_size for f in path.iterdir()) < 8e6


def test_zero_shot_top1_over_12_labels(model, processor, bar_scenes, sampler, meets_bar):
    labels = sw.zero_shot_labels()
    logits = clip.zero_shot_scores(model, processor, [s.render() for s in bar_scenes], labels, padding=True)
    rights = [labels[i] == sw.true_label(s) for i, s in zip(logits.argmax(dim=1).tolist(), bar_scenes, strict=True)]
    meets_bar("clip", "zero-shot top-1, 12 colour-shape labels", rights, sampler)


def test_embeddings_are_vit_b32_sized_and_every_real_class_loads(path, model, processor):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModel, CLIPVisionModelWithProjection

    assert model.config.projection_dim == model.config.text_config.projection_dim == 512
    assert model.config.vision_config.projection_dim == 512
    inputs = processor(text=["a photo of a red circle"], images=[sw.sample_scene(1).render()], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
        text = CLIPTextModelWithProjection.from_pretrained(path)(input_ids=inputs["input_ids"]).text_embeds
        image = CLIPVisionModelWithProjection.from_pretrained(path)(pixel_values=inputs["pixel_values"]).image_embeds
        pooled = CLIPVisionModel.from_pretrained(path)(pixel_values=inputs["pixel_values"]).pooler_output
    assert out.text_embeds.shape == out.image_embeds.shape == (1, 512)
    assert torch.allclose(text, model.get_text_features(input_ids=inputs["input_ids"]).pooler_output, atol=1e-5)
    assert torch.allclose(image, model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output, atol=1e-5)
    assert pooled.shape == (1, model.config.vision_config.hidden_size)


def test_the_lift_to_512_dims_keeps_every_logit():
    q = clip.lift_matrix(64, 512)
    assert q.shape == (512, 64)
    assert torch.allclose(q.T @ q, torch.eye(64), atol=1e-5)
    assert torch.equal(q, clip.lift_matrix(64, 512))  # fixed: a rebuild gives the same weights
    small = clip.make_model(clip.make_processor().tokenizer).eval()
    lifted = clip.lift_projections(small)
    inputs = clip.make_processor()(text=sw.zero_shot_labels(), images=[sw.sample_scene(2).render()], return_tensors="pt",
                                   padding=True)
    with torch.no_grad():
        assert torch.allclose(small(**inputs).logits_per_image, lifted(**inputs).logits_per_image, atol=1e-4)
    assert lifted.config.projection_dim == 512 and lifted.visual_projection.weight.shape == (512, 64)


@pytest.mark.parametrize("kind", ["shape", "color"])
def test_shape_and_colour_label_sets_mostly_right(model, processor, scenes, kind):
    assert clip.zero_shot_accuracy(model, processor, scenes, kind, padding=True) >= 0.8


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
        assert model.get_text_features(**inputs).pooler_output.shape == (4, 512)


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
    assert model.config.projection_dim == 512
    assert (tmp_path / "README.md").read_text().count("zero-shot top-1") == 6  # 3 label sets x 2 samplers
    assert processor(text=["a photo of a red circle"], return_tensors="pt")["input_ids"].shape[0] == 1
