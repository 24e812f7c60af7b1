"""The catalogue: one record per course model, views that agree with it, one lookup with one error."""

from __future__ import annotations

import pytest

from vlm_course import catalogue, toy, toybuild
from vlm_course.catalogue import MODELS, TOYS, UnknownModelError, course_model, lesson_models
from vlm_course.sizes.count import count_parameters, meta_model
from vlm_course.toybuild import llava as toy_llava


def test_every_record_has_a_toy_of_the_same_classes_and_a_config_of_its_class():
    for hub_id, m in MODELS.items():
        assert m.toy_name in TOYS, hub_id
        assert m.config().model_type in {"clip", "siglip", "blip", "blip-2", "llava", "llava_next"}
        assert type(meta_model(m)).__name__ == m.model_class
    assert {m.toy_name for m in MODELS.values()} == set(TOYS)


@pytest.mark.parametrize("hub_id", [h for h, m in MODELS.items() if m.published_params])
def test_parameter_count_matches_published_figure(hub_id):
    published = MODELS[hub_id].published_params
    counted = count_parameters(hub_id).total
    assert abs(counted - published) / published < 0.01, f"{hub_id}: {counted:,} vs published {published:,}"


def test_laptop_stand_in_is_a_small_llava_of_the_same_class():
    seed = MODELS["llava-hf/llava-1.5-7b-hf"]
    small = MODELS[seed.stand_in]
    assert small.hub_id == "llava-hf/llava-interleave-qwen-0.5b-hf"
    assert small.model_class == seed.model_class == "LlavaForConditionalGeneration"
    assert small.stands_in_for == (seed.hub_id,)
    assert count_parameters(small).total == 864_031_264  # exact, on the meta device
    assert small.lessons == ()  # loaded in place of the seed, never named by a lesson


def test_lookup_by_hub_id_or_toy_name():
    assert course_model("llava") is MODELS["llava-hf/llava-1.5-7b-hf"]  # the seed, not the stand-in
    assert course_model("clip").hub_id == "openai/clip-vit-base-patch32"
    assert course_model(MODELS["google/siglip-base-patch16-224"]).toy_name == "siglip"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownModelError, match="not a course model") as err:
        course_model("gpt2")
    assert "llava-hf/llava-1.5-7b-hf" in str(err.value) and "blip2 (toy name)" in str(err.value)
    assert str(err.value).startswith("'gpt2'")  # not KeyError's repr of the message


def test_lessons_list_only_what_they_load():
    assert [m.hub_id for m in lesson_models(5)] == ["llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"]
    assert [m.hub_id for m in lesson_models("06")] == ["llava-hf/llava-1.5-7b-hf"]
    assert lesson_models(7) == []
    assert set(catalogue.lessons()) == {"01", "02", "03", "04", "05", "06", "08", "09"}


def test_toy_and_toybuild_registries_are_views_of_the_catalogue():
    assert toy.TOY_MODELS == {n: (t.model_class, t.processor_class) for n, t in TOYS.items()}
    assert toybuild.BUILDERS == {n: t.builder for n, t in TOYS.items()}
    assert toybuild.BUILD_MINUTES == {n: t.build_minutes for n, t in TOYS.items()}
    assert toybuild.DEPENDS_ON["llava-next"] == ("llava",) and "clip" not in toybuild.DEPENDS_ON
    assert toy_llava.REAL == {"llava": "llava-hf/llava-1.5-7b-hf", "llava-next": "llava-hf/llava-v1.6-mistral-7b-hf"}


def test_dependencies_come_first_in_build_order():
    order = toybuild.build_order(list(TOYS))
    for name, t in TOYS.items():
        assert all(order.index(dep) < order.index(name) for dep in t.depends_on)
