"""Fixtures of the grading tests (the cases themselves live in grading_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from grading_cases import write_hidden_tests


@pytest.fixture(scope="session")
def hidden_tests(tmp_path_factory) -> Path:
    """A hidden test folder for the fake exercise (no conftest.py: the grading plugin's fixtures serve it)."""
    return write_hidden_tests(tmp_path_factory.mktemp("hidden_tests"))
