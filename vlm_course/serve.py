"""Start and stop a ``transformers serve`` process (an OpenAI-compatible server, as vLLM is).

Learners point ``VLM_COURSE_SERVER`` at it. ``ServerProcess`` is used by the tests and the load benchmark.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HEALTH_TIMEOUT_S = 300.0


class ServeError(RuntimeError):
    """The server did not start or did not answer; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _healthy(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``GET /health`` answers 200 (plain sockets: no proxy settings, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.") and b" 200 " in head[:16]


@dataclass
class ServerProcess:
    """One ``transformers serve CHECKPOINT`` process on ``host:port`` (``extra`` = more CLI flags).

    ``start()`` waits until ``/health`` answers; ``stop()`` ends it (and whatever it started);
    ``start()`` again restarts it on the same port. The server's output goes to ``log_path``.
    """

    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 0
    extra: list[str] = field(default_factory=list)
    device: str = "cpu"
    log_path: Path | None = None
    env: dict[str, str] | None = None
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.host)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="vlm-course-serve-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)

    @property
    def url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The model name the server answers to (``transformers serve`` uses the path it was given)."""
        return self.checkpoint

    def command(self) -> list[str]:
        return [sys.executable, "-m", "transformers.cli.transformers", "serve", self.checkpoint,
                "--host", self.host, "--port", str(self.port), "--device", self.device, *self.extra]

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> ServerProcess:
        """Start the server and wait for ``/health``; ServeError with the log's end if it does not come up."""
        if self.running():
            return self
        if _healthy(self.host, self.port, timeout=1.0):
            raise ServeError(f"something already answers on {self.host}:{self.port}: choose another --port")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServeError(f"`transformers serve` exited with code {self._proc.returncode} while starting:\n"
                                 f"{self.log_tail()}")
            if _healthy(self.host, self.port):
                return self
            time.sleep(0.25)
        self.stop()
        raise ServeError(f"`transformers serve` did not answer on {self.url} within {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """End the server process group (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

