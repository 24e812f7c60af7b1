"""Does a model fit this machine? Memory needed = weights + prompt (KV cache, activations) + runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from transformers import PretrainedConfig

from .memory import FLOAT_DTYPES, normalize_dtype, weight_memory
from .prompt import prompt_memory

GiB = 2**30
RUNTIME_OVERHEAD = GiB // 2  # torch / CUDA context and allocator slack
# The prompt the estimates assume unless told: one image, a short question, a short answer.
DEFAULT_PROMPT = dict(prompt_tokens=32, new_tokens=64, image_size=(480, 640), batch=1)


def gib(n: int | float) -> str:
    """``n`` bytes as a short figure: GiB from 1 GiB up, MiB below."""
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"


@dataclass(frozen=True)
class Machine:
    """Memory of this machine in bytes (GPU figures are 0 without a CUDA GPU)."""

    ram_total: int
    ram_available: int
    gpu_name: str | None = None
    gpu_total: int = 0
    gpu_free: int = 0

    def describe(self) -> str:
        gpu = f"GPU {self.gpu_name}: {gib(self.gpu_total)} ({gib(self.gpu_free)} free)" if self.gpu_name else "no CUDA GPU"
        return f"{gpu}; RAM {gib(self.ram_total)} ({gib(self.ram_available)} available)"


def this_machine() -> Machine:
    """RAM from psutil and the first CUDA GPU's memory from torch."""
    import psutil
    import torch

    vm = psutil.virtual_memory()
    if not torch.cuda.is_available():
        return Machine(ram_total=vm.total, ram_available=vm.available)
    free, total = torch.cuda.mem_get_info(0)
    return Machine(vm.total, vm.available, torch.cuda.get_device_name(0), total, free)


@dataclass(frozen=True)
class Need:
    """Bytes one model needs in one dtype for the assumed prompt."""

    model: str
    dtype: str
    weights: int
    prompt: int
    overhead: int = RUNTIME_OVERHEAD

    @property
    def total(self) -> int:
        return self.weights + self.prompt + self.overhead


def memory_needed(model: str | PretrainedConfig, dtype: str = "fp16", *, class_name: str | None = None,
                  base_dtype: str = "fp16", **prompt) -> Need:
    """Weights (quantization scales included) + KV cache + activations + runtime overhead."""
    dtype = normalize_dtype(dtype)
    weights = weight_memory(model, dtype, class_name=class_name, base_dtype=base_dtype).total
    kwargs = {**DEFAULT_PROMPT, **prompt}
    extra = prompt_memory(model, dtype=dtype if dtype in FLOAT_DTYPES else base_dtype, class_name=class_name, **kwargs)
    name = model if isinstance(model, str) else (getattr(model, "_name_or_path", "") or model.model_type)
    return Need(model=name, dtype=dtype, weights=weights, prompt=extra.total)


class LessonFit(NamedTuple):
    """Whether a lesson's hub checkpoints run here: ``ok``, a one-line ``why``, and where (``gpu``/``cpu``/``""``)."""

    ok: bool
    why: str
    device: str = ""


def lesson_models() -> dict[str, list[str]]:
    """Lesson number -> the hub checkpoints it loads (from ``profiles.REGISTRY``)."""
    from ..profiles import REGISTRY

    lessons: dict[str, list[str]] = {}
    for entry in REGISTRY.values():
        for lesson in entry.lessons:
            lessons.setdefault(lesson, []).append(entry.hub_id)
    return dict(sorted(lessons.items()))


def lessons_runnable(ram_bytes: int, gpu_bytes: int | None = None, *, cpu_dtype: str = "fp32",
                     gpu_dtype: str = "fp16") -> dict[str, LessonFit]:
    """For each lesson, whether its hub checkpoints fit, loaded one at a time in the course's default
    dtype (``gpu_dtype`` on a CUDA GPU with ``gpu_bytes``, else ``cpu_dtype`` in ``ram_bytes`` of RAM).
    A GPU that is too small falls back to the CPU, as the lessons do."""
    result: dict[str, LessonFit] = {}
    for lesson, models in lesson_models().items():
        cpu = max((memory_needed(m, cpu_dtype) for m in models), key=lambda n: n.total)
        if gpu_bytes:
            gpu = max((memory_needed(m, gpu_dtype) for m in models), key=lambda n: n.total)
            if gpu.total <= gpu_bytes:
                result[lesson] = LessonFit(True, f"GPU in {gpu_dtype}: {gpu.model} needs {gib(gpu.total)} of {gib(gpu_bytes)}", "gpu")
                continue
        if cpu.total <= ram_bytes:
            result[lesson] = LessonFit(True, f"CPU in {cpu_dtype}: {cpu.model} needs {gib(cpu.total)} of {gib(ram_bytes)} RAM", "cpu")
            continue
        nf4 = memory_needed(cpu.model, "nf4")
        gpu_part = f", {gib(memory_needed(cpu.model, gpu_dtype).total)} GPU in {gpu_dtype} (have {gib(gpu_bytes)})" if gpu_bytes else ""
        room = max(ram_bytes, gpu_bytes or 0)
        nf4_part = (f"4-bit NF4 would fit ({gib(nf4.total)})" if nf4.total <= room
                    else f"even 4-bit NF4 needs {gib(nf4.total)}")
        result[lesson] = LessonFit(False, f"{cpu.model} needs {gib(cpu.total)} RAM in {cpu_dtype} "
                                   f"(have {gib(ram_bytes)}){gpu_part}; {nf4_part}")
    return result
