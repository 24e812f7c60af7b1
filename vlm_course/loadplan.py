"""What to load for a course model on a machine: ``plan_load(name) -> LoadPlan``.

The plan picks the source (the seed's hub checkpoint, a laptop-size real checkpoint of the same
class, or the toy), the dtype and quantization, the device, and says why in one line. Lessons pass
its values to ``from_pretrained`` themselves (``dtype=plan.dtype``, ``quantization_config=...``).

Rules of the ``auto`` profile (the default):

* **fits**: weights + prompt + runtime must stay within ``HEADROOM`` of the memory models load
  into: 90% of a CUDA GPU, 60% of an Apple M-series' unified memory (the system shares it), 70% of
  the RAM of a CPU machine. CUDA loads in bf16 (fp16 where the GPU has no bf16) and falls back to
  bitsandbytes 4-bit NF4; Apple GPUs load fp16; CPUs load fp32.
* **fast enough**: on a CPU, a text generator costs about ``weights / CPU_BANDWIDTH`` seconds per
  generated token (decoding streams every weight once per token); slower than
  ``MAX_SECONDS_PER_TOKEN`` is not chosen silently.
* **downloaded or small**: the checkpoint is in the Hugging Face cache, or its download is at most
  ``AUTO_DOWNLOAD_LIMIT`` bytes and the hub answers. A bigger download needs consent: the ``hub``
  profile, ``VLM_COURSE_ALLOW_DOWNLOAD=1``, or ``vlm-course download --lesson N`` beforehand.

Otherwise ``auto`` falls back, saying so, to the catalogue's laptop-size stand-in (when the seed has
one and it passes the same rules), else to the toy. The ``hub`` profile makes the same dtype and
quantization choice but never falls back: it raises ``ModelDoesNotFitError`` (naming the options)
before anything is downloaded, or ``HubUnavailableError`` when the checkpoint cannot be fetched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from . import profiles, toy
from .catalogue import MODELS, CourseModel, UnknownModelError, course_model
from .sizes.fit import Machine, gb, gib, memory_needed
from .sizes.memory import FLOAT_DTYPES, weight_memory

HEADROOM: dict[str, float] = {"cuda": 0.9, "mps": 0.6, "cpu": 0.7}
MEMORY_NAME: dict[str, str] = {"cuda": "GPU memory", "mps": "unified memory", "cpu": "RAM"}
CPU_BANDWIDTH = 20e9  # bytes per second a laptop CPU streams weights at while decoding
MAX_SECONDS_PER_TOKEN = 0.5
AUTO_DOWNLOAD_LIMIT = 2_000_000_000  # bytes auto downloads without being asked
DOWNLOAD_ENV = "VLM_COURSE_ALLOW_DOWNLOAD"
SOURCES = ("hub", "stand-in", "toy")


class ModelDoesNotFitError(RuntimeError):
    """The hub profile asked for a checkpoint this machine cannot hold; the message names the options."""


@dataclass(frozen=True)
class LoadPlan:
    """What to load for ``model`` and why (see the module docstring)."""

    model: str  # the course checkpoint asked for (hub id)
    source: str  # "hub", "stand-in" or "toy"
    checkpoint: str  # what to pass to from_pretrained: a hub id or a toy folder
    dtype: torch.dtype
    quantization: str | None  # "nf4" or None
    device: str  # "cuda", "mps" or "cpu"
    memory_bytes: int  # weights + prompt + runtime, estimated
    download_bytes: int  # still to download before loading (0 when cached or toy)
    reason: str  # one line
    model_class: str
    processor_class: str
    profile: str
    revision: str | None = None
    seconds_per_token: float | None = field(default=None, compare=False)  # CPU estimate for generators

    @property
    def quantization_config(self) -> Any:
        """A ``BitsAndBytesConfig`` for 4-bit NF4, or ``None``."""
        if self.quantization != "nf4":
            return None
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.dtype)

    @property
    def device_map(self) -> str:
        return self.device

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """``dtype``, ``quantization_config``, ``device_map`` (and ``revision`` when pinned) for ``from_pretrained``."""
        kwargs: dict[str, Any] = dict(dtype=self.dtype, quantization_config=self.quantization_config,
                                      device_map=self.device_map)
        if self.revision:
            kwargs["revision"] = self.revision
        return kwargs

    @property
    def dtype_name(self) -> str:
        """``fp32``, ``fp16``, ``bf16`` or ``nf4``."""
        if self.quantization:
            return self.quantization
        return next(name for name, d in FLOAT_DTYPES.items() if d == self.dtype)

    def __str__(self) -> str:
        return f"[vlm-course] {self.model}: {self.source} {self.checkpoint} ({self.dtype_name} on {self.device}) - {self.reason}"


def download_consent() -> bool:
    """True when ``$VLM_COURSE_ALLOW_DOWNLOAD`` says large downloads are fine."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def memory_limit(machine: Machine) -> int:
    """Bytes a model may take on ``machine`` (``HEADROOM`` of the memory it loads into)."""
    total = machine.gpu_total if machine.accelerator == "cuda" else machine.ram_total
    return int(HEADROOM[machine.accelerator] * total)


def candidate_dtypes(machine: Machine) -> list[str]:
    """The dtypes ``auto`` tries on ``machine``, best first."""
    if machine.accelerator == "cuda":
        return ["bf16" if machine.bf16 else "fp16"] + (["nf4"] if machine.bitsandbytes else [])
    if machine.accelerator == "mps":
        return ["fp16"]
    return ["fp32"]


def _torch_dtype(name: str, machine: Machine) -> torch.dtype:
    if name == "nf4":  # the dtype of everything bitsandbytes leaves unquantized, and its compute dtype
        return torch.bfloat16 if machine.bf16 else torch.float16
    return FLOAT_DTYPES[name]


def is_cached(model: CourseModel, machine: Machine) -> bool:
    if machine.cached is not None:
        return model.hub_id in machine.cached
    return profiles.is_cached(model.hub_id, model.revision)


def is_online(machine: Machine) -> bool:
    if machine.online is not None:
        return machine.online
    return profiles.hub_reachable()


def _offline_why(machine: Machine) -> str:
    if machine.online is None and profiles.hub_offline():
        return "HF_HUB_OFFLINE=1 is set"
    return f"the hub did not answer within {profiles.HUB_TIMEOUT_S:g} s" if machine.online is None else "offline"


@dataclass(frozen=True)
class _Verdict:
    plan: LoadPlan | None
    why: str = ""  # why not
    unavailable: bool = False  # refused only because it is neither cached nor downloadable now


def _fit(model: CourseModel, machine: Machine) -> tuple[str | None, int]:
    """The first dtype that fits ``machine`` and the bytes it needs (else ``None`` and the smallest need)."""
    limit = memory_limit(machine)
    needs = []
    for name in candidate_dtypes(machine):
        need = memory_needed(model, name).total
        if need <= limit:
            return name, need
        needs.append(need)
    return None, min(needs)


def seconds_per_token(model: CourseModel, dtype: str = "fp32") -> float:
    """Estimated CPU decoding time per generated token: every weight byte streamed once."""
    return weight_memory(model, dtype).total / CPU_BANDWIDTH


def _try_hub(model: CourseModel, machine: Machine, profile: str, *, consent: bool, allow_slow: bool,
             source: str = "hub", asked: CourseModel | None = None) -> _Verdict:
    where = MEMORY_NAME[machine.accelerator]
    limit = memory_limit(machine)
    dtype, need = _fit(model, machine)
    if dtype is None:
        smallest = candidate_dtypes(machine)[-1]
        return _Verdict(None, f"{model.hub_id} needs {gib(need)} in {smallest}, more than "
                              f"{gib(limit)} ({HEADROOM[machine.accelerator]:.0%} of {where})")
    spt = None
    if machine.accelerator == "cpu" and model.generator:
        spt = seconds_per_token(model, dtype)
        if spt > MAX_SECONDS_PER_TOKEN and not allow_slow:
            return _Verdict(None, f"{model.hub_id} would take about {spt:.1f} s per generated token on a CPU "
                                  f"in {dtype} (limit {MAX_SECONDS_PER_TOKEN} s)")
    cached = is_cached(model, machine)
    if cached:
        fetch, note = 0, "in the local Hugging Face cache"
    elif not is_online(machine):
        return _Verdict(None, f"{model.hub_id} is not cached and {_offline_why(machine)}", unavailable=True)
    elif consent or model.download_bytes <= AUTO_DOWNLOAD_LIMIT:
        fetch, note = model.download_bytes, f"will download {gb(model.download_bytes)}"
    else:
        return _Verdict(None, f"{model.hub_id} needs a {gb(model.download_bytes)} download (auto fetches up to "
                              f"{gb(AUTO_DOWNLOAD_LIMIT)}; consent with vlm-course download, {DOWNLOAD_ENV}=1 "
                              f"or the hub profile)")
    quant = "nf4" if dtype == "nf4" else None
    speed = f", ~{spt:.2f} s/token" if spt is not None else ""
    reason = f"{model.hub_id} fits in {dtype} ({gib(need)} of {gib(limit)} usable {where}{speed}); {note}"
    plan = LoadPlan(model=(asked or model).hub_id, source=source, checkpoint=model.hub_id,
                    dtype=_torch_dtype(dtype, machine), quantization=quant, device=machine.accelerator,
                    memory_bytes=need, download_bytes=fetch, reason=reason, model_class=model.model_class,
                    processor_class=model.processor_class, profile=profile, revision=model.revision,
                    seconds_per_token=spt)
    return _Verdict(plan)


def _toy_plan(model: CourseModel, machine: Machine, profile: str, reason: str) -> LoadPlan:
    folder = toy.model_path(model.toy_name)
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))  # stored in fp32, loaded in fp32
    return LoadPlan(model=model.hub_id, source="toy", checkpoint=str(folder), dtype=torch.float32,
                    quantization=None, device=machine.accelerator, memory_bytes=weights, download_bytes=0,
                    reason=reason, model_class=model.model_class, processor_class=model.processor_class,
                    profile=profile)


def _does_not_fit(model: CourseModel, machine: Machine, why: str) -> ModelDoesNotFitError:
    options = []
    if model.stand_in:
        options.append(f"the default auto profile, which runs the laptop-size {model.stand_in} here")
    if machine.accelerator != "cuda" or not machine.bitsandbytes:
        nf4 = memory_needed(model, "nf4").total
        options.append(f"a CUDA GPU with bitsandbytes, where 4-bit NF4 needs about {gib(nf4)}")
    options.append(f"the toy profile ({profiles.PROFILE_ENV}=toy), which runs the ShapesWorld {model.toy_name} toy")
    return ModelDoesNotFitError(f"{why}, so the hub profile cannot load it on {machine.name}. Options: "
                                + "; ".join(options) + ".")


def plan_load(name: str | CourseModel, profile: str | None = None, machine: Machine | None = None, *,
              allow_download: bool = False) -> LoadPlan:
    """Decide what to load for the course model ``name`` (hub id or toy name) on ``machine``
    (default: this one) under ``profile`` (argument, else ``$VLM_COURSE_PROFILE``, else ``auto``)."""
    model = course_model(name)
    chosen = profiles.current_profile(profile)
    if chosen == "toy":
        return _toy_plan(model, machine or Machine.detect(), chosen, "toy profile requested")
    machine = machine or Machine.detect()
    if chosen == "hub":
        verdict = _try_hub(model, machine, chosen, consent=True, allow_slow=True)
        if verdict.plan is not None:
            return verdict.plan
        if verdict.unavailable:
            raise profiles.hub_unavailable(model.hub_id)
        raise _does_not_fit(model, machine, verdict.why)
    consent = allow_download or download_consent()
    verdict = _try_hub(model, machine, chosen, consent=consent, allow_slow=False)
    if verdict.plan is not None:
        return verdict.plan
    why = verdict.why
    if model.stand_in:
        small = MODELS[model.stand_in]
        alt = _try_hub(small, machine, chosen, consent=consent, allow_slow=False, source="stand-in", asked=model)
        if alt.plan is not None:
            return LoadPlan(**{**alt.plan.__dict__, "reason": f"{why} -> laptop-size {alt.plan.reason}"})
        why = f"{why}; laptop-size stand-in: {alt.why}"
    return _toy_plan(model, machine, chosen, f"{why} -> ShapesWorld toy {model.toy_name}")



def plan_if_course_model(name: str, profile: str | None = None) -> LoadPlan | None:
    """``plan_load(name)`` for a course model; ``None`` for a folder or any other hub id, which the
    caller loads as given (the exercises accept both)."""
    try:
        return plan_load(name, profile)
    except UnknownModelError:
        return None

def requirements(name: str | CourseModel) -> str:
    """One line: the memory the course model ``name`` needs in each dtype (what its seed checkpoint would need)."""
    model = course_model(name)
    need = {d: gib(memory_needed(model, d).total) for d in ("fp32", "fp16", "nf4")}
    return (f"{model.hub_id} needs about {need['fp32']} in fp32 (CPU), {need['fp16']} in fp16/bf16 "
            f"(GPU) or {need['nf4']} in 4-bit NF4 (CUDA GPU with bitsandbytes), plus a {gb(model.download_bytes)} download")


def fits(plan: LoadPlan, dtype: str, machine: Machine | None = None) -> bool:
    """True when ``plan``'s checkpoint would also fit ``machine`` (default: this one) in ``dtype``
    (``fp32``, ``fp16``, ``bf16``, ``int8`` or ``nf4``); toy checkpoints always fit."""
    if plan.source == "toy":
        return True
    machine = machine or Machine.detect()
    return memory_needed(MODELS[plan.checkpoint], dtype).total <= memory_limit(machine)
