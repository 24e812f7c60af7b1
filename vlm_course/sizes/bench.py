"""Speed of a real-size architecture with random weights: nothing is downloaded.

Encoders (CLIP, SigLIP) report images per second through ``get_image_features``. Generators
(BLIP, BLIP-2, LLaVA) report time to first token (vision encoder + prefill) and tokens per second
while decoding, from ``generate`` with a timing streamer. Random weights give meaningless text but
the same amount of work per token as the real checkpoint. Measuring stops once ``seconds`` have
passed (``generate(max_time=...)`` ends a run after the token in progress; a single prefill that
takes longer than ``seconds`` still finishes). Building and one warm-up run are not counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.generation.streamers import BaseStreamer

from ..catalogue import CourseModel, course_model
from ..device import pick_device, pick_dtype
from .count import config_of, count_parameters, model_class, resolve
from .fit import GiB, Machine, gib, memory_needed, this_machine
from .memory import FLOAT_DTYPES, normalize_dtype
from .prompt import _llava_next_views, image_tokens, kind


class BenchRefused(RuntimeError):
    """The model would not fit in this machine's memory; the message says what to try instead."""


@dataclass
class BenchResult:
    """What one ``bench`` run measured."""

    model: str
    kind: str  # "encoder" or "generator"
    device: str
    dtype: str
    params: int
    seconds: float  # measured time (building and warm-up excluded)
    images: int = 0  # encoders: images embedded
    images_per_s: float = 0.0
    runs: int = 0  # generators: prompts answered
    new_tokens: list[int] = field(default_factory=list)  # tokens generated per run
    ttft_s: list[float] = field(default_factory=list)  # time to first token per run
    tokens_per_s: float = 0.0  # decoding speed after the first token (median over runs)

    def summary(self) -> str:
        head = f"{self.model} ({self.params / 1e9:.2f}B params, random weights) on {self.device} in {self.dtype}: "
        if self.kind == "encoder":
            return head + f"{self.images_per_s:.1f} images/s ({self.images} images in {self.seconds:.1f} s)"
        ttft = statistics.median(self.ttft_s) if self.ttft_s else float("nan")
        return head + (f"time to first token {ttft:.2f} s, {self.tokens_per_s:.1f} tokens/s "
                       f"({self.runs} runs, {sum(self.new_tokens)} tokens in {self.seconds:.1f} s)")


def check_fits(model: str | CourseModel | PretrainedConfig, dtype: str, device: torch.device, *, class_name: str | None = None,
               machine: Machine | None = None, **prompt) -> int:
    """Bytes needed; raises ``BenchRefused`` (with the dtypes that would fit) when memory is short."""
    machine = machine or this_machine()
    if device.type == "cuda":
        have, where = machine.gpu_free, f"the GPU ({machine.gpu_name}) has"
    else:
        have, where = machine.ram_available, "this machine's RAM has"
    need = memory_needed(model, dtype, class_name=class_name, **prompt).total
    if need <= have:
        return need
    name = model if isinstance(model, str) else getattr(model, "hub_id", None) or model.model_type
    options = [f"--dtype {d} ({gib(n)})" for d in FLOAT_DTYPES if d != dtype
               if (n := memory_needed(model, d, class_name=class_name, **prompt).total) <= have]
    if device.type == "cpu" and machine.gpu_total:
        options.append("--device cuda")
    hint = ("try " + " or ".join(options)) if options else (
        "no dtype fits; use a machine with more memory, or measure the toy model instead")
    raise BenchRefused(f"{name} in {dtype} needs about {gib(need)} (weights, prompt, runtime) but {where} "
                       f"{gib(have)} available; {hint}.")


def build_random(model: str | CourseModel | PretrainedConfig, dtype: torch.dtype, device: torch.device,
                 class_name: str | None = None) -> PreTrainedModel:
    """The architecture with transformers' own random initialisation, built directly on ``device``."""
    config, class_name = resolve(model, class_name)
    cls = model_class(class_name)
    with torch.device(device):
        built = cls._from_config(config, dtype=dtype)
    return built.eval()


def _prompt_ids(config: PretrainedConfig, n: int, batch: int, device: torch.device) -> torch.Tensor:
    tc = config.text_config
    avoid = {getattr(config, "image_token_index", None), getattr(config, "image_token_id", None)}
    low, high = 10, min(tc.vocab_size, 1000)
    ids = torch.randint(low, high, (batch, n), generator=torch.Generator().manual_seed(0))
    for bad in avoid - {None}:
        ids[ids == bad] = low
    return ids.to(device)


def make_inputs(model: PreTrainedModel, prompt_tokens: int, batch: int,
                image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Random inputs shaped as the model's processor would return them for one image per prompt."""
    config = model.config
    device, dtype = model.device, model.dtype
    size = config.vision_config.image_size
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, size, size, generator=gen)
    if kind(config) == "encoder":
        return {"pixel_values": pixels.to(device, dtype)}
    ids = _prompt_ids(config, prompt_tokens, batch, device)
    inputs: dict[str, torch.Tensor] = {"input_ids": ids, "pixel_values": pixels.to(device, dtype)}
    if config.model_type in ("blip-2", "llava", "llava_next"):
        n_img = image_tokens(config, image_size)
        image_ids = torch.full((batch, n_img), config.image_token_index, device=device)
        inputs["input_ids"] = torch.cat([image_ids, ids], dim=1)
    if config.model_type == "llava_next":
        views = _llava_next_views(config, *image_size)
        inputs["pixel_values"] = torch.randn(batch, views, 3, size, size, generator=gen).to(device, dtype)
        inputs["image_sizes"] = torch.tensor([list(image_size)] * batch, device=device)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    return inputs


class _TokenClock(BaseStreamer):
    """Records when ``generate`` emits each new token (the first ``put`` is the prompt)."""

    def __init__(self, on_token=None) -> None:
        self.times: list[float] = []
        self._prompt_seen = False
        self._on_token = on_token

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        if self._on_token:
            self._on_token()

    def end(self) -> None:
        pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(seconds: float, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=round(seconds, 1), desc=desc, unit="s", disable=not enabled,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s{postfix}")


def _advance(bar, start: float, seconds: float) -> None:
    bar.n = round(min(time.perf_counter() - start, seconds), 1)
    bar.refresh()


@torch.inference_mode()
def measure_encoder(model: PreTrainedModel, *, seconds: float, batch: int, max_batches: int | None = None,
                    progress: bool = True) -> tuple[int, float]:
    """(images embedded, seconds) for repeated ``get_image_features`` on random image batches."""
    inputs = make_inputs(model, 0, batch, (0, 0))
    model.get_image_features(**inputs)  # warm-up, not timed
    _sync(model.device)
    images, start = 0, time.perf_counter()
    with _progress(seconds, "images", progress) as bar:
        while True:
            model.get_image_features(**inputs)
            _sync(model.device)
            images += batch
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{images / elapsed:.1f} images/s")
            _advance(bar, start, seconds)
            if elapsed >= seconds or (max_batches is not None and images >= max_batches * batch):
                return images, elapsed


@torch.inference_mode()
def measure_generator(model: PreTrainedModel, *, seconds: float, prompt_tokens: int, new_tokens: int,
                      image_size: tuple[int, int], max_runs: int | None = None,
                      progress: bool = True) -> tuple[list[float], list[int], list[float], float]:
    """Per run: time to first token, tokens generated, decoding tokens/s; and the total seconds."""
    inputs = make_inputs(model, prompt_tokens, 1, image_size)
    fixed = dict(do_sample=False, min_new_tokens=new_tokens, max_new_tokens=new_tokens)
    model.generate(**inputs, do_sample=False, max_new_tokens=2)  # warm-up, not timed
    ttfts: list[float] = []
    counts: list[int] = []
    speeds: list[float] = []
    start = time.perf_counter()
    with _progress(seconds, "generate", progress) as bar:
        while time.perf_counter() - start < seconds and (max_runs is None or len(counts) < max_runs):
            clock = _TokenClock(on_token=lambda: _advance(bar, start, seconds))
            left = max(seconds - (time.perf_counter() - start), 0.05)
            t0 = time.perf_counter()
            model.generate(**inputs, **fixed, streamer=clock, max_time=left)
            if not clock.times:
                break
            ttfts.append(clock.times[0] - t0)
            counts.append(len(clock.times))
            if len(clock.times) > 1:
                speeds.append((len(clock.times) - 1) / (clock.times[-1] - clock.times[0]))
            bar.set_postfix_str(f"first token {ttfts[-1]:.2f} s, {speeds[-1] if speeds else 0:.1f} tokens/s")
    return ttfts, counts, speeds, time.perf_counter() - start


def bench(model: str | CourseModel | PretrainedConfig, *, seconds: float = 20.0, dtype: str | None = None,
          device: str | None = None, batch: int = 8, prompt_tokens: int = 32, new_tokens: int = 32,
          image_size: tuple[int, int] = (480, 640), class_name: str | None = None,
          machine: Machine | None = None, max_iterations: int | None = None,
          progress: bool = True, announce: Callable[[str], None] | None = None) -> BenchResult:
    """Build ``model`` (a course hub id, a toy name, or a config) with random weights and time it.

    ``dtype`` defaults to the course's choice for the device (fp32 on CPU, bf16/fp16 on GPU).
    ``max_iterations`` caps the batches (encoders) or prompts (generators) on top of ``seconds``.
    Raises ``BenchRefused`` before building anything when memory is short; ``announce`` is told
    what is being built once the memory check passed.
    """
    if isinstance(model, str):
        model = course_model(model)  # resolved once for everything below
    config = config_of(model)
    dev = pick_device(device)
    name = normalize_dtype(dtype) if dtype else normalize_dtype(pick_dtype(dev))
    if name not in FLOAT_DTYPES:
        raise ValueError(f"bench builds random float weights; use --dtype fp32, fp16 or bf16 (not {name}). "
                         "`vlm-course estimate` shows the int8 / nf4 memory figures.")
    what = kind(config)
    prompt = dict(prompt_tokens=prompt_tokens, new_tokens=new_tokens, image_size=image_size,
                  batch=batch if what == "encoder" else 1)
    check_fits(model, name, dev, class_name=class_name, machine=machine, **prompt)
    label = model.hub_id if isinstance(model, CourseModel) else (getattr(config, "_name_or_path", "") or config.model_type)
    if announce:
        announce(f"building {label} with random weights in {name} on {dev} (large models take a while) ...")
    built = build_random(model, FLOAT_DTYPES[name], dev, class_name)
    result = BenchResult(model=label, kind=what, device=str(dev), dtype=name,
                         params=count_parameters(built).total, seconds=0.0)
    if what == "encoder":
        result.images, result.seconds = measure_encoder(built, seconds=seconds, batch=batch,
                                                        max_batches=max_iterations, progress=progress)
        result.images_per_s = result.images / result.seconds
    else:
        result.ttft_s, result.new_tokens, speeds, result.seconds = measure_generator(
            built, seconds=seconds, prompt_tokens=prompt_tokens, new_tokens=new_tokens, image_size=image_size,
            max_runs=max_iterations, progress=progress)
        result.runs = len(result.new_tokens)
        result.tokens_per_s = statistics.median(speeds) if speeds else 0.0
    del built
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return result


__all__ = ["BenchRefused", "BenchResult", "bench", "build_random", "check_fits", "make_inputs", "GiB"]
