"""Device and dtype selection: cuda > mps > cpu, overridable by argument and environment."""

from __future__ import annotations

import pytest
import torch

from vlm_course import device as dev


@pytest.fixture
def no_overrides(monkeypatch):
    monkeypatch.delenv("VLM_COURSE_DEVICE", raising=False)
    monkeypatch.delenv("VLM_COURSE_DTYPE", raising=False)


def _fake(monkeypatch, cuda: bool, mps: bool, bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(dev, "_mps_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_pick_order(monkeypatch, no_overrides, cuda, mps, expected):
    _fake(monkeypatch, cuda, mps)
    assert dev.pick_device().type == expected


def test_dtype_per_device(monkeypatch, no_overrides):
    _fake(monkeypatch, True, False, bf16=True)
    assert dev.pick_dtype("cuda") is torch.bfloat16
    _fake(monkeypatch, True, False, bf16=False)
    assert dev.pick_dtype("cuda") is torch.float16
    assert dev.pick_dtype("mps") is torch.float16
    assert dev.pick_dtype("cpu") is torch.float32


def test_overrides(monkeypatch, no_overrides):
    _fake(monkeypatch, False, False)
    assert dev.pick_device("cpu").type == "cpu"
    monkeypatch.setenv("VLM_COURSE_DTYPE", "bf16")
    assert dev.pick_dtype("cpu") is torch.bfloat16
    assert dev.pick_dtype("cpu", "float16") is torch.float16
    assert dev.pick_dtype("cpu", torch.float32) is torch.float32
    monkeypatch.setenv("VLM_COURSE_DEVICE", "cpu")
    assert dev.pick_device().type == "cpu"


def test_unavailable_or_unknown_choices_are_clear_errors(monkeypatch, no_overrides):
    _fake(monkeypatch, False, False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        dev.pick_device("cuda")
    monkeypatch.setenv("VLM_COURSE_DEVICE", "mps")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        dev.pick_device()
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        dev.pick_dtype("cpu", "int3")


def test_describe_device_names_the_cpu(monkeypatch, no_overrides):
    _fake(monkeypatch, False, False)
    assert dev.describe_device().startswith("cpu:")
