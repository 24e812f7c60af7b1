"""Load plans on simulated machines (meta device only; nothing is loaded or downloaded)."""

from __future__ import annotations

import pytest
import torch

from vlm_course import loadplan, profiles, toy
from vlm_course.catalogue import MODELS, UnknownModelError, seed_models
from vlm_course.loadplan import LoadPlan, ModelDoesNotFitError, memory_limit, plan_load
from vlm_course.sizes.fit import SIMULATED, GiB, Machine

LLAVA = "llava-hf/llava-1.5-7b-hf"
NEXT = "llava-hf/llava-v1.6-mistral-7b-hf"
BLIP2 = "Salesforce/blip2-opt-2.7b"
CLIP = "openai/clip-vit-base-patch32"
STAND_IN = "llava-hf/llava-interleave-qwen-0.5b-hf"

LAPTOP_8, LAPTOP_16, APPLE, T4, A100 = SIMULATED.values()


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: pytest.fail("simulated machines never ask the hub"))


def auto(name: str, machine: Machine, **kw) -> LoadPlan:
    return plan_load(name, "auto", machine, **kw)


@pytest.mark.parametrize("machine", SIMULATED.values(), ids=lambda m: m.name)
@pytest.mark.parametrize("cached", [False, True], ids=["empty cache", "cached"])
def test_every_plan_fits_and_says_why(machine, cached):
    m = machine.with_cache(cached)
    for model in seed_models():
        plan = auto(model.hub_id, m)
        assert plan.memory_bytes <= memory_limit(m)
        assert plan.reason and "\n" not in plan.reason
        assert plan.model_class == model.model_class and plan.source in loadplan.SOURCES
        if plan.source != "toy":
            assert plan.download_bytes == (0 if cached else MODELS[plan.checkpoint].download_bytes)
            assert plan.download_bytes <= loadplan.AUTO_DOWNLOAD_LIMIT  # auto never pulls a big download
        if plan.seconds_per_token is not None:
            assert plan.seconds_per_token <= loadplan.MAX_SECONDS_PER_TOKEN


def test_cpu_laptop_runs_the_laptop_size_llava_in_fp32():
    plan = auto(LLAVA, LAPTOP_16.with_cache(False))
    assert (plan.source, plan.checkpoint, plan.dtype, plan.device) == ("stand-in", STAND_IN, torch.float32, "cpu")
    assert plan.model == LLAVA and plan.quantization_config is None
    assert "27.6 GiB in fp32" in plan.reason and STAND_IN in plan.reason and "will download 1.7 GB" in plan.reason


def test_cpu_without_stand_in_falls_back_to_the_toy_and_says_so():
    plan = auto(NEXT, LAPTOP_16.with_cache(True))
    assert plan.source == "toy" and plan.checkpoint == str(toy.model_path("llava-next"))
    assert plan.reason.endswith("-> ShapesWorld toy llava-next") and "30.5 GiB" in plan.reason


def test_slow_generator_on_a_big_cpu_is_not_chosen_silently():
    big_cpu = Machine(64 * GiB, 64 * GiB, name="64 GB workstation", cached=frozenset(MODELS), online=False)
    plan = auto(LLAVA, big_cpu)  # fits in fp32, but ~1.4 s per token
    assert plan.source == "stand-in" and "s per generated token" in plan.reason
    hub = plan_load(LLAVA, "hub", big_cpu)  # the hub profile is consent
    assert hub.source == "hub" and hub.seconds_per_token > loadplan.MAX_SECONDS_PER_TOKEN


def test_t4_quantizes_llava_to_nf4_and_keeps_clip_in_fp16():
    plan = auto(LLAVA, T4.with_cache(True))
    assert (plan.source, plan.quantization, plan.dtype, plan.device) == ("hub", "nf4", torch.float16, "cuda")
    q = plan.model_kwargs["quantization_config"]
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_compute_dtype == torch.float16
    assert plan.model_kwargs["device_map"] == "cuda"
    assert auto(CLIP, T4.with_cache(True)).model_kwargs == dict(dtype=torch.float16, quantization_config=None,
                                                                 device_map="cuda")


def test_a100_loads_every_cached_seed_in_bf16():
    m = A100.with_cache(True)
    for model in seed_models():
        plan = auto(model.hub_id, m)
        assert (plan.source, plan.dtype, plan.quantization) == ("hub", torch.bfloat16, None), model.hub_id


def test_apple_loads_fp16_within_60_percent_of_unified_memory():
    m = APPLE.with_cache(True)
    assert auto(BLIP2, m).dtype == torch.float16 and auto(BLIP2, m).source == "hub"
    assert auto(LLAVA, m).source == "stand-in"  # 14.1 GiB > 9.6 GiB
    assert memory_limit(m) == int(0.6 * 16 * GiB)


def test_big_download_needs_consent():
    m = A100.with_cache(False)
    assert auto(LLAVA, m).source == "stand-in"
    assert "needs a 14.1 GB download" in auto(LLAVA, m).reason
    consented = auto(LLAVA, m, allow_download=True)
    assert consented.source == "hub" and consented.download_bytes == MODELS[LLAVA].download_bytes


def test_download_consent_from_environment(monkeypatch):
    monkeypatch.setenv(loadplan.DOWNLOAD_ENV, "1")
    assert auto(BLIP2, A100.with_cache(False)).source == "hub"


def test_offline_and_not_cached_falls_back(monkeypatch):
    m = LAPTOP_16.with_cache(False, online=False)
    plan = auto(CLIP, m)
    assert plan.source == "toy" and "not cached and offline" in plan.reason
    assert auto(LLAVA, m).source == "toy"  # the stand-in is not cached either


def test_hub_profile_refuses_what_cannot_fit_and_names_the_options():
    with pytest.raises(ModelDoesNotFitError) as err:
        plan_load(LLAVA, "hub", LAPTOP_8.with_cache(True))
    message = str(err.value)
    assert "27.6 GiB in fp32" in message and STAND_IN in message and "NF4" in message and "toy" in message


def test_hub_profile_offline_raises_hub_unavailable():
    with pytest.raises(profiles.HubUnavailableError, match="VLM_COURSE_PROFILE=toy"):
        plan_load(CLIP, "hub", LAPTOP_16.with_cache(False, online=False))


def test_hub_profile_downloads_big_checkpoints_that_fit():
    plan = plan_load(BLIP2, "hub", A100.with_cache(False))
    assert plan.source == "hub" and plan.download_bytes == MODELS[BLIP2].download_bytes


def test_toy_profile_and_toy_names():
    plan = plan_load("blip2", "toy", LAPTOP_8)
    assert (plan.model, plan.source, plan.dtype) == (BLIP2, "toy", torch.float32)
    assert plan.checkpoint == str(toy.model_path("blip2")) and plan.download_bytes == 0
    assert 0 < plan.memory_bytes < 50 * 2**20


def test_unknown_name_is_one_error():
    with pytest.raises(UnknownModelError, match="not a course model"):
        plan_load("gpt2", "auto", LAPTOP_8)


def test_detect_describes_this_machine():
    m = Machine.detect()
    assert m.accelerator in HEADROOM_KEYS and m.ram_total > 0 and not m.simulated


HEADROOM_KEYS = tuple(loadplan.HEADROOM)


def test_requirements_and_fits_for_lessons_that_try_several_precisions():
    line = loadplan.requirements("llava")
    assert line.startswith("llava-hf/llava-1.5-7b-hf needs about 27.6 GiB in fp32") and "14.1 GB download" in line
    t4 = T4.with_cache(True)
    plan = auto(LLAVA, t4)
    assert loadplan.fits(plan, "nf4", t4) and not loadplan.fits(plan, "fp32", t4)
    assert loadplan.fits(plan_load(LLAVA, "toy", t4), "fp32", t4)


def test_model_kwargs_load_the_toy_as_planned(one_torch_thread):
    import dataclasses

    from transformers import LlavaForConditionalGeneration

    plan = plan_load("llava", "toy", LAPTOP_16)
    model = LlavaForConditionalGeneration.from_pretrained(plan.checkpoint, **plan.model_kwargs)
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    pytest.importorskip("bitsandbytes")
    nf4 = dataclasses.replace(plan, dtype=torch.bfloat16, quantization="nf4")  # what a CUDA plan passes
    quantized = LlavaForConditionalGeneration.from_pretrained(nf4.checkpoint, **nf4.model_kwargs)
    assert any(type(m).__name__ == "Linear4bit" for m in quantized.modules())
