"""``vlm-course serve MODEL``: serve a course model to a lab through ``transformers serve``.

The server speaks the OpenAI chat API (as vLLM does); learners point ``VLM_COURSE_SERVER`` at it.
The command loads what the course's load plan picks for this machine (dtype, 4-bit NF4 where only
that fits), says how many learners' conversations the memory left holds, and asks one image
question before saying it is ready. ``ServerProcess`` starts and stops one ``transformers serve``
process; the command, the tests and the load benchmark use it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loadplan import LoadPlan
    from .sizes.fit import Machine

HEALTH_TIMEOUT_S = 300.0
# One learner's conversation for capacity estimates: an image, 5 turns of ~20-token questions and
# ~40-token replies (the history is resent, so the server holds it all).
LEARNER_TURNS = 5
QUESTION_TOKENS = 20
REPLY_TOKENS = 40
SERVE_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


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


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent goes (no orphan servers)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


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
    die_with_parent: bool = False  # Linux: the server gets SIGTERM when the thread that started it ends
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
            proc = self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, preexec_fn=_die_with_parent if self.die_with_parent else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServeError(f"`transformers serve` exited with code {proc.returncode} while starting:\n"
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




_SHARED: dict[str, ServerProcess] = {}


def shared_server(checkpoint: str, timeout: float = HEALTH_TIMEOUT_S) -> ServerProcess:
    """One loopback server of ``checkpoint`` per Python process (tests, lesson demos), started on first
    use, restarted if it was stopped, stopped when the process exits (or dies). One torch thread: the
    toys are tiny. Call it from the main thread."""
    server = _SHARED.get(checkpoint)
    if server is None:
        server = _SHARED[checkpoint] = ServerProcess(checkpoint, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                                     die_with_parent=True)
        atexit.register(server.stop)
    return server.start(timeout=timeout)

# ---- what to serve, and how many learners it holds --------------------------------------------------


def serve_flags(plan: LoadPlan) -> list[str]:
    """``transformers serve`` flags for a load plan: ``--dtype`` and, for NF4, ``--quantization bnb-4bit``."""
    from .sizes.memory import normalize_dtype

    flags = ["--dtype", SERVE_DTYPES[normalize_dtype(plan.dtype)]]  # for NF4: what stays unquantized
    return flags + (["--quantization", "bnb-4bit"] if plan.quantization == "nf4" else [])


@dataclass(frozen=True)
class Capacity:
    """How many learners' conversations fit next to the weights (catalogue memory estimates)."""

    model: str
    dtype: str  # fp32 / fp16 / bf16 / nf4
    usable: int  # bytes the plan lets models use on this machine
    weights: int
    working: int  # one prefill's activations + runtime overhead
    per_learner: int  # key/value cache of one learner's whole conversation
    tokens_per_learner: int

    @property
    def learners(self) -> int:
        return max(0, (self.usable - self.weights - self.working) // self.per_learner)

    def describe(self) -> str:
        from .sizes.fit import gib

        return (f"{self.model} in {self.dtype}: {gib(self.weights)} weights + {gib(self.working)} working memory; "
                f"each learner's conversation ({self.tokens_per_learner} tokens) keeps {gib(self.per_learner)} of "
                f"key/value cache, so {gib(self.usable)} holds about {self.learners} learners at once")


def capacity(model: str, dtype: str, machine: Machine, turns: int = LEARNER_TURNS) -> Capacity:
    """Learners whose conversations (``turns`` turns about one image) fit on ``machine`` at once."""
    from .loadplan import memory_limit
    from .sizes.fit import RUNTIME_OVERHEAD
    from .sizes.memory import FLOAT_DTYPES, weight_memory
    from .sizes.prompt import prompt_memory

    text = turns * QUESTION_TOKENS + (turns - 1) * REPLY_TOKENS
    cache_dtype = dtype if dtype in FLOAT_DTYPES else "fp16"
    one = prompt_memory(model, prompt_tokens=text, new_tokens=REPLY_TOKENS, dtype=cache_dtype)
    return Capacity(model=model, dtype=dtype, usable=memory_limit(machine),
                    weights=weight_memory(model, dtype).total, working=one.activations + RUNTIME_OVERHEAD,
                    per_learner=one.kv_cache, tokens_per_learner=one.sequence_length)


# ---- the command ---------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("model", nargs="?", default="llava-hf/llava-1.5-7b-hf",
                        help="course model (hub id or toy name) or a local checkpoint folder (default: %(default)s)")
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to listen on; 0.0.0.0 (default) = every network interface, so laptops reach it")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--continuous-batching", action="store_true",
                        help="let the server batch concurrent chats together (more replies per second)")
    parser.add_argument("--timeout", type=float, default=HEALTH_TIMEOUT_S,
                        help="seconds to wait for the model to load (default: %(default)s)")
    parser.add_argument("--check-only", action="store_true",
                        help="start, answer the test question, print the settings, stop (try a configuration)")


def _lan_address() -> str:
    """This machine's address on its network (what laptops use), or its host name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # UDP: no packet is sent, the OS only picks the route
            return str(s.getsockname()[0])
    except OSError:
        return socket.gethostname()


def _plan(name: str) -> tuple[str, LoadPlan | None]:
    """(checkpoint to serve, the load plan) for a course model; a local folder is served as it is."""
    from .catalogue import UnknownModelError
    from .loadplan import plan_load

    try:
        plan = plan_load(name)
    except UnknownModelError:
        if Path(name).is_dir():
            return name, None
        raise
    return plan.checkpoint, plan


def run(args: argparse.Namespace) -> int:
    from . import shapesworld as sw
    from .catalogue import UnknownModelError
    from .loadplan import ModelDoesNotFitError
    from .served import SERVER_ENV, ServedModel, ServerError
    from .sizes.fit import Machine

    try:
        checkpoint, plan = _plan(args.model)
    except (UnknownModelError, ModelDoesNotFitError) as exc:
        print(f"vlm-course serve: {exc}", file=sys.stderr)
        return 2
    extra = ["--continuous-batching"] if args.continuous_batching else []
    if plan is not None:
        print(plan)
        extra = serve_flags(plan) + extra
        device = plan.device
        if plan.source != "toy":
            print("[vlm-course] " + capacity(plan.model if plan.source == "hub" else checkpoint,
                                             plan.dtype_name, Machine.detect()).describe())
    else:
        device = "auto"
    server = ServerProcess(checkpoint, host=args.host, port=args.port, extra=extra, device=device)
    print(f"[vlm-course] starting: transformers {' '.join(server.command()[3:])}  (log: {server.log_path})", flush=True)
    try:
        server.start(timeout=args.timeout)
        local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        scene = sw.sample_scene(0)
        reply = ServedModel(f"http://{local}:{server.port}/v1", model=server.model).check(scene.render())
    except (ServeError, ServerError) as exc:
        server.stop()
        print(f"vlm-course serve: {exc}", file=sys.stderr)
        return 1
    public = _lan_address() if args.host in ("0.0.0.0", "::", "") else args.host
    print(f"[vlm-course] test question answered in {reply.total_s:.1f} s: {reply.text.strip()!r}")
    print(f"[vlm-course] ready: {server.model} at http://{public}:{server.port}/v1")
    print("Learners set (before starting Jupyter):")
    print(f"  {SERVER_ENV}=http://{public}:{server.port}/v1")
    if args.check_only:
        server.stop()
        return 0
    print("Press Ctrl+C to stop the server.", flush=True)
    try:
        while server.running():
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\n[vlm-course] stopping the server")
    finally:
        server.stop()
    return 0
