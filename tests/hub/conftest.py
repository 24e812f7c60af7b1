"""A Hugging Face cache holding real-size course checkpoints with random weights (built once per session)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from vlm_course.fakehub import build_fake_hub

# The hub checkpoints lessons 01-03 load that a laptop can hold (ViT-L/14 of lesson 01 is left to `auto`).
SMALL_HUB_MODELS = (
    "openai/clip-vit-base-patch32",
    "google/siglip-base-patch16-224",
    "Salesforce/blip-image-captioning-base",
    "Salesforce/blip-vqa-base",
)
NEEDED_DISK_BYTES = 5 << 30


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "small_hub_model" in metafunc.fixturenames:
        metafunc.parametrize("small_hub_model", SMALL_HUB_MODELS)


@pytest.fixture(scope="session")
def small_hub_models() -> tuple[str, ...]:
    return SMALL_HUB_MODELS


@pytest.fixture(scope="session")
def fake_hub_home(tmp_path_factory) -> Iterator[str]:
    """``HF_HOME`` of a fresh cache with ``SMALL_HUB_MODELS`` in it (about 3.6 GB, 20-40 s to build;
    removed at the end of the session). Generation stops at once (``end_texts_early``), so lessons pay
    for the real-size forward passes, not for 30 tokens of noise per caption."""
    home = tmp_path_factory.mktemp("hf-home")
    free = shutil.disk_usage(home).free
    if free < NEEDED_DISK_BYTES:
        pytest.skip(f"real-size cache needs {NEEDED_DISK_BYTES >> 30} GiB free in {home}, found {free / 2**30:.1f} GiB")
    try:
        build_fake_hub(SMALL_HUB_MODELS, home / "hub", end_texts_early=True)
        yield str(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def hub_env(fake_hub_home, monkeypatch) -> dict[str, str]:
    """This process and its children see only the fake cache, offline, with the profile left to `auto`."""
    monkeypatch.setenv("HF_HOME", fake_hub_home)
    monkeypatch.setenv("HF_HUB_CACHE", os.path.join(fake_hub_home, "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VLM_COURSE_PROFILE", raising=False)
    return dict(os.environ)
