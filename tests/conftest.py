"""Test-wide settings: offline toy profile, and no network beyond this machine's loopback."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from vlm_course.exercise_tests.fixtures import (  # noqa: F401 - shared fixtures
    add_submission_option,
    clip_model_name,
    one_torch_thread,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLM_COURSE_PROFILE", "toy")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here too (not only in vlm_course/exercise_tests/conftest.py) so `pytest tests --submission DIR` works.
    add_submission_option(parser)


class NetworkBlockedError(OSError):
    """A test tried to reach a host other than this machine."""


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkBlockedError(f"tests may not use the network (tried {address!r})")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkBlockedError(f"tests may not use the network (tried {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield



@pytest.fixture(scope="session")
def toy_llava_server():
    """A real ``transformers serve`` with the toy LLaVA on a free loopback port (the one the chatbot
    exercise tests use too). A test may stop and start it again (fault injection)."""
    from vlm_course.profiles import resolve
    from vlm_course.serve import shared_server

    return shared_server(resolve("llava-hf/llava-1.5-7b-hf", profile="toy", verbose=False), timeout=240)
