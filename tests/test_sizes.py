"""vlm_course.sizes: real-checkpoint configs and parameter counts, memory per dtype checked against
the toy checkpoints loaded for real (4-bit and 8-bit included), prompt memory, fit logic, bench and
the estimate / bench commands. Nothing is downloaded; real-size models are only built on meta."""

from __future__ import annotations

import re

import pytest
import torch
import transformers
from transformers import AutoConfig, BitsAndBytesConfig

from vlm_course import cli, toy
from vlm_course.sizes import bench as bench_mod
from vlm_course.sizes.bench import BenchRefused, bench, make_inputs
from vlm_course.sizes.count import count_parameters, meta_model
from vlm_course.sizes.fit import GiB, Machine, memory_needed
from vlm_course.sizes.memory import DTYPES, weight_memory
from vlm_course.sizes.prompt import image_tokens, prompt_memory

FLOAT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------- configs and counts

def test_clip_base_count_is_exact_and_split_into_parts():
    count = count_parameters("openai/clip-vit-base-patch32")
    assert count.total == 151_277_313
    assert count.parts["vision"] == 87_849_216  # ViT-B/32 tower + visual projection
    assert count.parts["bridge"] == 0


def test_llava_parts_are_clip_large_and_llama_7b():
    parts = count_parameters("llava-hf/llava-1.5-7b-hf").parts
    assert parts["vision"] == 303_507_456  # CLIP ViT-L/14-336 vision tower
    assert parts["bridge"] == 1024 * 4096 + 4096 + 4096 * 4096 + 4096  # two-layer MLP projector
    assert 6.73e9 < parts["language"] < 6.75e9  # Llama-2-7B with 32064 tokens


def test_blip_counts_tied_lm_head_once():
    # The hub stores the tied decoder head twice (247.4M / 384.7M tensors); in memory it is one tensor.
    model = meta_model("Salesforce/blip-image-captioning-base")
    stored = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert stored == 247_444_600
    assert count_parameters(model).total == stored - 30524 * 768 - 30524


# ---------------------------------------------------------------- weight memory vs the real thing

def _load_toy(name: str, dtype: str):
    cls = getattr(transformers, toy.TOY_MODELS[name][0])
    kwargs = {"dtype": FLOAT.get(dtype, torch.float16)}
    if dtype == "int8":
        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu")
    elif dtype == "nf4":
        kwargs.update(device_map="cpu", quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16))
    return cls.from_pretrained(toy.model_path(name), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", toy.TOY_NAMES)
def test_weight_memory_matches_loaded_toy_footprint(name):
    path = toy.model_path(name)  # fails (does not skip) when a toy checkpoint is missing
    config = AutoConfig.from_pretrained(path)
    class_name = toy.TOY_MODELS[name][0]
    for dtype in DTYPES:
        real = _load_toy(name, dtype).get_memory_footprint()
        estimate = weight_memory(config, dtype, class_name=class_name).footprint
        assert abs(estimate - real) / real < 0.05, f"{name} {dtype}: estimate {estimate} vs real {real}"


def test_quantization_scales_match_bitsandbytes_state():
    import bitsandbytes as bnb

    name = "llava"
    config = AutoConfig.from_pretrained(toy.model_path(name))
    model = _load_toy(name, "nf4")
    absmax = sum(m.weight.quant_state.absmax.numel() * m.weight.quant_state.absmax.element_size()
                 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert weight_memory(config, "nf4", class_name=toy.TOY_MODELS[name][0]).quant_state == absmax


def test_blip2_keeps_qformer_unquantized_and_fp32_in_fp16():
    model = meta_model("Salesforce/blip2-opt-2.7b")
    qformer = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("qformer.", "query_tokens")))
    nf4 = weight_memory("Salesforce/blip2-opt-2.7b", "nf4")
    assert {"qformer", "query_tokens", "language_model.lm_head"} <= set(nf4.skipped_modules)
    # The projector's weight is quantized (a plain Linear); its bias and the Q-Former are not.
    assert nf4.kept_params["bridge"] == qformer + model.language_projection.bias.numel()
    fp16 = weight_memory("Salesforce/blip2-opt-2.7b", "fp16").footprint
    bf16 = weight_memory("Salesforce/blip2-opt-2.7b", "bf16").footprint
    assert fp16 - bf16 == 2 * qformer  # _keep_in_fp32_modules applies to fp16 only


def test_llava_quantizes_vision_tower_but_not_lm_head_or_embeddings():
    model = meta_model("llava-hf/llava-1.5-7b-hf")
    nf4 = weight_memory(model, "nf4")
    assert nf4.skipped_modules == ("lm_head",)
    vision_linear = sum(m.weight.numel() for n, m in model.named_modules()
                        if n.startswith("model.vision_tower.") and type(m) is torch.nn.Linear)
    vision_total = count_parameters(model).parts["vision"]
    assert nf4.kept_params["vision"] == vision_total - vision_linear
    embed_and_head = 2 * 32064 * 4096
    assert nf4.kept_params["language"] > embed_and_head
    # The unquantized embeddings + LM head (0.26B params in fp16) keep 4-bit at ~3.6x smaller than fp16, not 4x.
    ratio = weight_memory(model, "fp16").footprint / nf4.footprint
    assert 3.5 < ratio < 3.7


# ---------------------------------------------------------------- prompt memory

def test_image_tokens_of_the_real_checkpoints():
    assert image_tokens("llava-hf/llava-1.5-7b-hf") == 576
    assert image_tokens("llava-hf/llava-v1.6-mistral-7b-hf", (480, 640)) == 2340
    assert image_tokens("Salesforce/blip2-opt-2.7b") == 32
    assert image_tokens("openai/clip-vit-base-patch32") == 50


@pytest.mark.parametrize("name,size", [("llava", None), ("llava-next", (480, 640)), ("llava-next", (200, 500)),
                                       ("blip2", None)])
def test_image_tokens_match_the_toy_processor(name, size):
    from PIL import Image
    from transformers import AutoProcessor

    path = toy.model_path(name)
    processor = AutoProcessor.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    h, w = size or (config.vision_config.image_size,) * 2
    image = Image.new("RGB", (w, h), "white")
    text = f"{processor.image_token} what is this?" if name != "blip2" else "what is this?"
    ids = processor(images=image, text=text, return_tensors="pt")["input_ids"]
    assert int((ids == config.image_token_index).sum()) == image_tokens(config, (h, w))


def _cache_bytes(cache) -> int:
    caches = [cache.self_attention_cache, cache.cross_attention_cache] if hasattr(cache, "self_attention_cache") else [cache]
    return sum(t.numel() * t.element_size() for c in caches for layer in c.layers
               for t in (layer.keys, layer.values) if t is not None)


@pytest.mark.parametrize("name", ["blip-captioning", "blip-vqa", "blip2", "llava", "llava-next"])
def test_kv_cache_estimate_is_exact_for_toy_generation(name, one_torch_thread):
    path = toy.model_path(name)
    class_name = toy.TOY_MODELS[name][0]
    model = getattr(transformers, class_name).from_pretrained(path, dtype=torch.float32).eval()
    inputs = make_inputs(model, prompt_tokens=6, batch=1, image_size=(480, 640))
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, min_new_tokens=5, max_new_tokens=5,
                             return_dict_in_generate=True)
    expected = prompt_memory(model.config, prompt_tokens=6, new_tokens=5, image_size=(480, 640), dtype="fp32",
                             class_name=class_name)
    assert _cache_bytes(out.past_key_values) == expected.kv_cache


def test_kv_cache_of_llava_is_linear_in_tokens():
    a = prompt_memory("llava-hf/llava-1.5-7b-hf", prompt_tokens=32, new_tokens=64)
    b = prompt_memory("llava-hf/llava-1.5-7b-hf", prompt_tokens=33, new_tokens=64)
    assert b.kv_cache - a.kv_cache == 32 * 2 * 4096 * 2  # layers * (k+v) * hidden * fp16 bytes
    assert a.kv_cache == (32 + 576 + 64 - 1) * 32 * 2 * 4096 * 2


# ---------------------------------------------------------------- fit

def test_memory_needed_adds_prompt_and_runtime():
    need = memory_needed("llava-hf/llava-1.5-7b-hf", "fp16")
    assert need.weights == weight_memory("llava-hf/llava-1.5-7b-hf", "fp16").total
    assert need.total == need.weights + need.prompt + need.overhead


# ---------------------------------------------------------------- bench

def _forbid_building(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("bench built a model it should have refused")
    monkeypatch.setattr(bench_mod, "build_random", fail)


def test_bench_refuses_a_7b_model_in_fp32_on_24gb(monkeypatch):
    _forbid_building(monkeypatch)
    machine = Machine(ram_total=24 * GiB, ram_available=22 * GiB)
    with pytest.raises(BenchRefused) as info:
        bench("llava-hf/llava-1.5-7b-hf", dtype="fp32", device="cpu", machine=machine, progress=False)
    message = str(info.value)
    assert re.search(r"needs about 2\d\.\d GiB", message) and "22.0 GiB available" in message
    assert "--dtype fp16" in message and "--dtype bf16" in message


def test_bench_refusal_without_any_fitting_dtype(monkeypatch):
    _forbid_building(monkeypatch)
    machine = Machine(ram_total=8 * GiB, ram_available=6 * GiB)
    with pytest.raises(BenchRefused, match="no dtype fits"):
        bench("llava-hf/llama3-llava-next-8b-hf", device="cpu", machine=machine, progress=False)


def test_bench_rejects_quantized_dtypes():
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        bench("clip", dtype="nf4", device="cpu", progress=False)


def test_bench_encoder_counts_images(one_torch_thread):
    config = AutoConfig.from_pretrained(toy.model_path("clip"))
    result = bench(config, class_name="CLIPModel", device="cpu", batch=3, seconds=60, max_iterations=2, progress=False)
    assert result.kind == "encoder"
    assert result.images == 6
    assert result.images_per_s == pytest.approx(6 / result.seconds)
    assert result.params == count_parameters(config, "CLIPModel").total


@pytest.mark.parametrize("name", ["llava", "blip2"])
def test_bench_generator_times_every_token(name, one_torch_thread):
    config = AutoConfig.from_pretrained(toy.model_path(name))
    result = bench(config, class_name=toy.TOY_MODELS[name][0], device="cpu", seconds=60, max_iterations=2,
                   new_tokens=4, prompt_tokens=5, progress=False)
    assert result.kind == "generator" and result.runs == 2
    assert result.new_tokens == [4, 4]
    assert len(result.ttft_s) == 2 and all(0 < t < result.seconds for t in result.ttft_s)
    assert result.tokens_per_s > 0
    assert "time to first token" in result.summary()


# ---------------------------------------------------------------- commands

def test_estimate_command_prints_the_table(capsys):
    machine = Machine(ram_total=32 * GiB, ram_available=30 * GiB, gpu_name="Test GPU", gpu_total=8 * GiB, gpu_free=8 * GiB)
    from vlm_course.sizes import table

    original = table.this_machine
    table.this_machine = lambda: machine
    try:
        assert cli.main(["estimate", "clip", "llava-hf/llava-1.5-7b-hf", "--dtype", "fp16", "nf4"]) == 0
    finally:
        table.this_machine = original
    out = capsys.readouterr().out
    assert "GPU Test GPU: 8.0 GiB" in out
    clip_row = next(line for line in out.splitlines() if line.startswith("openai/clip-vit-base-patch32") and "M " in line)
    assert "151.3M" in clip_row and clip_row.count("GR") == 2
    llava_row = next(line for line in out.splitlines() if line.startswith("llava-hf/llava-1.5-7b-hf") and "B " in line)
    assert "13.2 GiB R " in llava_row and "4.1 GiB GR" in llava_row  # fp16 too big for 8 GiB; 4-bit fits
    assert re.search(r"llava-hf/llava-1.5-7b-hf\s+576\s+336 MiB", out)


def test_estimate_command_rejects_unknown_models(capsys):
    assert cli.main(["estimate", "gpt2"]) == 1
    assert "not a course model" in capsys.readouterr().err


def test_bench_command_requires_random_weights(capsys):
    assert cli.main(["bench", "clip"]) == 1
    assert "--random-weights" in capsys.readouterr().err


def test_bench_command_reports_refusal(monkeypatch, capsys):
    _forbid_building(monkeypatch)
    monkeypatch.setattr(bench_mod, "this_machine", lambda: Machine(ram_total=20 * GiB, ram_available=16 * GiB))
    assert cli.main(["bench", "llava-hf/llava-1.5-7b-hf", "--random-weights", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "in fp32 needs about" in err and "no dtype fits" not in err and "--dtype" in err


def test_bench_search_runs_the_search_benchmark(tmp_path):
    script = tmp_path / "bench_search.py"
    script.write_text("import json, pathlib\n"
                      "def main(argv):\n"
                      f"    pathlib.Path({str(tmp_path / 'argv.json')!r}).write_text(json.dumps(argv))\n"
                      "    return 0\n")
    assert cli.main(["bench", "search", "--benchmarks", str(tmp_path), "--", "--sizes", "10000", "--skip-indexing"]) == 0
    assert (tmp_path / "argv.json").read_text() == '["--sizes", "10000", "--skip-indexing"]'


def test_bench_search_missing_says_where(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "search"]) == 1
    err = capsys.readouterr().err
    assert "benchmarks/bench_search.py does not exist" in err and "--benchmarks DIR" in err
