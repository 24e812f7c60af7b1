"""Fixtures shared by the exercise tests and the repository's own tests (``tests/conftest.py`` imports them)."""

from __future__ import annotations

import pytest

from vlm_course.submission import SUBMISSION_ENV

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def add_submission_option(parser: pytest.Parser) -> None:
    """``--submission DIR`` (for ``pytest_addoption``); once, whichever conftest comes first."""
    try:
        parser.addoption(
            "--submission",
            metavar="DIR",
            default=None,
            help=f"folder holding the exercise files to test (default: ${SUBMISSION_ENV}, else solutions/)",
        )
    except ValueError:  # added already by the other conftest
        pass


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a test module, restored afterwards.

    The toy models are tiny: one thread is faster than several (no thread hand-offs per small
    matmul, no spinning threads on a busy machine). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def clip_model_name() -> str:
    """The checkpoint the image-search tests use (its toy stand-in under the toy profile)."""
    return DEFAULT_CLIP
