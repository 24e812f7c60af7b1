"""Does a model fit a machine? Memory needed = weights + prompt (KV cache, activations) + runtime.

``Machine`` describes this machine (``Machine.detect()``) or a simulated one (``SIMULATED``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from transformers import PretrainedConfig

from ..catalogue import CourseModel
from .memory import FLOAT_DTYPES, normalize_dtype, weight_memory
from .prompt import prompt_memory

GiB = 2**30
RUNTIME_OVERHEAD = GiB // 2  # torch / CUDA context and allocator slack
# The prompt the estimates assume unless told: one image, a short question, a short answer.
DEFAULT_PROMPT = dict(prompt_tokens=32, new_tokens=64, image_size=(480, 640), batch=1)


def gib(n: int | float) -> str:
    """``n`` bytes as a short figure: GiB from 1 GiB up, MiB below."""
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"


def gb(n: int | float) -> str:
    """Download sizes in decimal units, as the hub's file listings show them."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass(frozen=True)
class Machine:
    """A machine the course may run on: its memory in bytes, its accelerator, and what it has.

    ``accelerator`` is where models load: ``"cuda"`` (GPU memory ``gpu_total``), ``"mps"`` (an Apple
    GPU sharing ``ram_total``) or ``"cpu"``. ``cached`` and ``online`` are ``None`` for the real
    machine (look in the Hugging Face cache, ask the hub); simulated machines fix them.
    """

    ram_total: int
    ram_available: int
    gpu_name: str | None = None
    gpu_total: int = 0
    gpu_free: int = 0
    name: str = "this machine"
    accelerator: str = "cpu"
    bf16: bool = False  # CUDA GPU with bfloat16 support
    bitsandbytes: bool = False  # bitsandbytes 4-bit layers can run here (CUDA with the package)
    cached: frozenset[str] | None = None  # hub ids in the HF cache (None: look in the real cache)
    online: bool | None = None  # hub reachable (None: ask the hub)

    def describe(self) -> str:
        gpu = f"GPU {self.gpu_name}: {gib(self.gpu_total)} ({gib(self.gpu_free)} free)" if self.gpu_name else "no CUDA GPU"
        return f"{gpu}; RAM {gib(self.ram_total)} ({gib(self.ram_available)} available)"

    @property
    def simulated(self) -> bool:
        return self.cached is not None

    @classmethod
    def detect(cls) -> Machine:
        """This machine: RAM from psutil; the device ``device.pick_device()`` picks (``$VLM_COURSE_DEVICE``,
        else the first CUDA GPU, else an Apple GPU, else the CPU)."""
        import importlib.util

        import psutil
        import torch

        from ..device import pick_device

        vm = psutil.virtual_memory()
        kind = pick_device().type
        if kind == "cuda":
            free, total = torch.cuda.mem_get_info(0)
            return cls(vm.total, vm.available, torch.cuda.get_device_name(0), total, free, accelerator="cuda",
                       bf16=torch.cuda.is_bf16_supported(),
                       bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)
        if kind == "mps":
            return cls(vm.total, vm.available, accelerator="mps")
        return cls(vm.total, vm.available)

    def with_cache(self, cached: bool | tuple[str, ...] | frozenset[str], online: bool | None = None) -> Machine:
        """This machine as a simulation: ``True`` = every catalogue checkpoint cached, ``False`` = none,
        or the hub ids that are; ``online`` defaults to ``not cached`` (a laptop with internet)."""
        from ..catalogue import MODELS

        ids = frozenset(MODELS) if cached is True else frozenset() if cached is False else frozenset(cached)
        return replace(self, cached=ids, online=(not ids) if online is None else online)


def _simulated(name: str, gib_total: int, accelerator: str = "cpu", gpu: str | None = None,
               gpu_gib: int = 0, bf16: bool = False) -> Machine:
    ram = gib_total * GiB
    return Machine(ram, ram, gpu, gpu_gib * GiB, gpu_gib * GiB, name=name, accelerator=accelerator, bf16=bf16,
                   bitsandbytes=accelerator == "cuda", cached=frozenset(), online=True)


# Machines learners bring (documented in docs/hardware.md); each is simulated with and without a cache.
SIMULATED: dict[str, Machine] = {
    m.name: m
    for m in (
        _simulated("8 GB laptop (CPU)", 8),
        _simulated("16 GB laptop (CPU)", 16),
        _simulated("16 GB Apple M-series", 16, "mps"),
        _simulated("16 GB T4 (CUDA)", 16, "cuda", "Tesla T4", 15),
        _simulated("80 GB A100 (CUDA)", 128, "cuda", "A100-SXM4-80GB", 80, bf16=True),
    )
}


def this_machine() -> Machine:
    """This machine (``Machine.detect()``)."""
    return Machine.detect()


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


def memory_needed(model: str | CourseModel | PretrainedConfig, dtype: str = "fp16", *, class_name: str | None = None,
                  base_dtype: str = "fp16", **prompt) -> Need:
    """Weights (quantization scales included) + KV cache + activations + runtime overhead."""
    dtype = normalize_dtype(dtype)
    weights = weight_memory(model, dtype, class_name=class_name, base_dtype=base_dtype).total
    kwargs = {**DEFAULT_PROMPT, **prompt}
    extra = prompt_memory(model, dtype=dtype if dtype in FLOAT_DTYPES else base_dtype, class_name=class_name, **kwargs)
    name = model if isinstance(model, str) else getattr(model, "hub_id", "") or getattr(model, "_name_or_path", "") or model.model_type
    return Need(model=name, dtype=dtype, weights=weights, prompt=extra.total)
