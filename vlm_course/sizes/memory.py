"""Weight memory per dtype, following what transformers + bitsandbytes really do when loading.

* fp32 / fp16 / bf16: every floating-point parameter and buffer in that dtype, except tensors a
  model creates in a fixed dtype (RoPE ``inv_freq`` stays fp32, ``position_ids`` int64) and, in
  fp16 only, the model's ``_keep_in_fp32_modules`` (BLIP-2 keeps its Q-Former and query tokens
  in fp32).
* int8 / nf4 (``BitsAndBytesConfig(load_in_8bit=True)`` / ``load_in_4bit=True, bnb_4bit_quant_type="nf4"``):
  only plain ``nn.Linear`` layers are replaced, and transformers skips the modules it lists in
  ``get_modules_to_not_convert``: tied weights, the output embeddings (LM head), the very last
  parameter's module and ``_keep_in_fp32_modules``. Embeddings, convolutions (the patch
  embedding), norms and biases are never quantized. So the vision tower and the projector *are*
  quantized, BLIP-2's Q-Former is not. The rest stays in ``base_dtype`` (fp16 unless told).

``footprint`` equals ``model.get_memory_footprint()``; bitsandbytes also keeps per-block scales
outside the parameters (``quant_state``: fp32 absmax per 64 weights for 4-bit, one fp32 scale per
output row for int8), which ``total`` adds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.quantizers.base import HfQuantizer
from transformers.quantizers.quantizers_utils import should_convert_module

from ..catalogue import CourseModel, course_model
from .count import PARTS, meta_model, part_of

DTYPES: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "nf4")
FLOAT_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
QUANT_BYTES: dict[str, float] = {"int8": 1.0, "nf4": 0.5}  # bytes per quantized weight
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "4bit": "nf4",
            "8bit": "int8", "llm_int8": "int8"}
NF4_BLOCKSIZE = 64
# Meta models are built once in this dtype; tensors found in it follow the requested dtype, all
# others (fp32 RoPE frequencies, int64 ids) were created with a fixed dtype and keep it. A model
# passed in ready-built is read the same way with its own dtype (exact when that is not fp32).
_PROBE_DTYPE = torch.float16


def normalize_dtype(dtype: str | torch.dtype) -> str:
    """``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"`` or ``"nf4"`` from any common spelling."""
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    key = _ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return key


@dataclass(frozen=True)
class WeightMemory:
    """Memory of a model's weights when loaded in one dtype."""

    dtype: str
    base_dtype: str  # dtype of everything that is not quantized
    footprint: int  # bytes; what ``model.get_memory_footprint()`` reports
    quant_state: int  # bytes bitsandbytes keeps outside the parameters (scales)
    quantized_params: int  # parameters stored in int8 / 4 bit
    kept_params: dict[str, int] = field(default_factory=dict)  # unquantized parameters per part
    skipped_modules: tuple[str, ...] = ()  # what transformers told bitsandbytes to leave alone

    @property
    def total(self) -> int:
        """Bytes the weights really take: footprint plus quantization scales."""
        return self.footprint + self.quant_state


@lru_cache(maxsize=16)
def _cached_meta(model: CourseModel, class_name: str | None) -> PreTrainedModel:
    return meta_model(model, class_name, dtype=_PROBE_DTYPE)


def _probe_model(model: str | CourseModel | PretrainedConfig | PreTrainedModel,
                 class_name: str | None) -> PreTrainedModel:
    if isinstance(model, PreTrainedModel):
        return model
    if isinstance(model, (str, CourseModel)):
        return _cached_meta(course_model(model), class_name)
    return meta_model(model, class_name, dtype=_PROBE_DTYPE)


def _fp32_patterns(model: PreTrainedModel, base: torch.dtype) -> re.Pattern | None:
    """Params transformers upcasts to fp32 (its ``_get_dtype_plan``: a regex *search* on the name)."""
    keys: set[str] = set()
    if base == torch.float16:
        keys |= set(model._keep_in_fp32_modules or ())
    if base in (torch.float16, torch.bfloat16):
        keys |= set(model._keep_in_fp32_modules_strict or ())
    if not keys:
        return None
    return re.compile("|".join(k.replace("*", ".*") for k in sorted(keys)))


def skipped_modules(model: PreTrainedModel) -> list[str]:
    """Module patterns transformers' bitsandbytes quantizer leaves unquantized (default config)."""
    return sorted(HfQuantizer.get_modules_to_not_convert(model, None, model._keep_in_fp32_modules))


def quantized_linears(model: PreTrainedModel) -> dict[str, nn.Module]:
    """The layers ``replace_with_bnb_linear`` swaps for bitsandbytes layers, by module name."""
    from transformers.pytorch_utils import Conv1D

    skip = skipped_modules(model)
    return {
        name: module
        for name, module in model.named_modules()
        if (type(module) is nn.Linear or isinstance(module, Conv1D)) and should_convert_module(name, skip)
    }


def weight_memory(model: str | PretrainedConfig | PreTrainedModel, dtype: str | torch.dtype = "fp16", *,
                  class_name: str | None = None, base_dtype: str | torch.dtype = "fp16",
                  double_quant: bool = False) -> WeightMemory:
    """Weight memory of a course checkpoint / config / meta model loaded in ``dtype``.

    For ``int8`` / ``nf4``, ``base_dtype`` is the ``dtype=`` passed to ``from_pretrained`` next to
    the ``BitsAndBytesConfig`` (what the unquantized layers use).
    """
    dtype = normalize_dtype(dtype)
    quant = dtype if dtype in QUANT_BYTES else None
    base_name = normalize_dtype(base_dtype) if quant else dtype
    if base_name not in FLOAT_DTYPES:
        raise ValueError(f"base_dtype must be one of {', '.join(FLOAT_DTYPES)}, not {base_dtype!r}")
    base = FLOAT_DTYPES[base_name]
    built = _probe_model(model, class_name)
    fp32_re = _fp32_patterns(built, base)
    quantized = quantized_linears(built) if quant else {}

    probe = built.dtype  # tensors in the build dtype follow the requested dtype; others keep theirs
    footprint = quant_state = quantized_params = 0
    kept = dict.fromkeys(PARTS, 0)
    for name, p in built.named_parameters():
        module_name, _, attr = name.rpartition(".")
        n = p.numel()
        if module_name in quantized and attr == "weight":
            quantized_params += n
            if quant == "nf4":
                footprint += math.ceil(n / 2)  # two 4-bit values per uint8
                blocks = math.ceil(n / NF4_BLOCKSIZE)
                quant_state += blocks + 4 * math.ceil(blocks / 256) if double_quant else 4 * blocks
            else:
                footprint += n
                quant_state += 4 * p.shape[0]  # one fp32 scale (SCB) per output row
            continue
        kept[part_of(name)] += n
        keep_fp32 = fp32_re is not None and fp32_re.search(name) is not None
        footprint += n * _element_size(p.dtype, probe, base, keep_fp32)
    for _, b in built.named_buffers():
        footprint += b.numel() * _element_size(b.dtype, probe, base, False)
    return WeightMemory(dtype=dtype, base_dtype=base_name, footprint=footprint, quant_state=quant_state,
                        quantized_params=quantized_params, kept_params=kept,
                        skipped_modules=tuple(skipped_modules(built)) if quant else ())


def _element_size(actual: torch.dtype, probe: torch.dtype, base: torch.dtype, keep_fp32: bool) -> int:
    if keep_fp32:
        return 4
    if actual == probe:  # created in the default dtype -> follows the requested one
        return torch.empty((), dtype=base).element_size()
    return torch.empty((), dtype=actual).element_size()


def memory_table(model: str | PretrainedConfig, dtypes: tuple[str, ...] = DTYPES, *,
                 class_name: str | None = None, base_dtype: str = "fp16") -> dict[str, WeightMemory]:
    """``weight_memory`` for each dtype (the meta model is built once)."""
    built = _probe_model(model, class_name)
    return {d: weight_memory(built, d, base_dtype=base_dtype) for d in map(normalize_dtype, dtypes)}
