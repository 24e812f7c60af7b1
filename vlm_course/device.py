"""Pick the compute device and a sensible dtype, overridable by argument or environment."""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "VLM_COURSE_DEVICE"
DTYPE_ENV = "VLM_COURSE_DTYPE"
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` (or ``$VLM_COURSE_DEVICE``) if given, else cuda, then mps, then cpu."""
    wanted = preferred or os.environ.get(DEVICE_ENV)
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {wanted!r} was asked for, but CUDA is not available; use 'cpu' or unset {DEVICE_ENV}")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(f"device {wanted!r} was asked for, but Apple MPS is not available; use 'cpu' or unset {DEVICE_ENV}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str | None = None, preferred: str | torch.dtype | None = None) -> torch.dtype:
    """``preferred`` (or ``$VLM_COURSE_DTYPE``) if given; else bf16 on GPUs that support it,
    fp16 on other GPUs and Apple MPS, fp32 on CPU."""
    wanted = preferred if preferred is not None else os.environ.get(DTYPE_ENV)
    if isinstance(wanted, torch.dtype):
        return wanted
    if wanted:
        key = str(wanted).lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ValueError(f"unknown dtype {wanted!r}; use one of float32, float16, bfloat16")
        return _DTYPES[key]
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def describe_device(device: torch.device | None = None) -> str:
    """One line naming the device: GPU name and memory, Apple GPU, or CPU."""
    device = device or pick_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return "mps: Apple GPU (shares system memory)"
    return f"cpu: {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"
