"""Sizes of the course's real checkpoints without downloading them.

* ``specs``: their architecture configs, written from the published ``config.json`` files;
* ``count``: exact parameter counts on the meta device;
* ``memory`` / ``prompt``: weight memory per dtype (as transformers + bitsandbytes load it) and the
  KV cache / activations of a prompt;
* ``fit``: the machine (this one or a simulated one) and the memory a model needs on it;
* ``bench``: real-size speed with random weights; ``download``: prefetch into the HF cache;
* ``table``: the size table of ``vlm-course estimate`` and lesson 07.

Submodules import lazily so ``import vlm_course.sizes`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "spec": "specs", "config": "specs",
    "count_parameters": "count", "meta_model": "count", "ParamCount": "count",
    "DTYPES": "memory", "weight_memory": "memory", "memory_table": "memory", "WeightMemory": "memory",
    "prompt_memory": "prompt", "image_tokens": "prompt", "PromptMemory": "prompt",
    "Machine": "fit", "SIMULATED": "fit", "this_machine": "fit", "memory_needed": "fit",
    "BenchRefused": "bench", "BenchResult": "bench",
    "load_manifest": "download", "DownloadError": "download",
    "rows": "table", "render": "table",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
