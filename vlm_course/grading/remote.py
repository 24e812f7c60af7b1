"""The trusted side of grading: proxies whose calls run in a sandboxed worker.

When ``vlm-course grade`` runs the exercise tests, the ``submission`` fixture returns a
``RemoteSubmission`` instead of importing the learner's files: ``load("image_search")`` gives a
proxy of the module held by a sandboxed worker process (one worker per module, reused by every
test), attribute reads and calls travel as JSON (``protocol``), values come back decoded (lists,
dicts, tuples, numpy arrays, PIL images...) and other objects as further proxies. An exception
raised by learner code is raised here again as the same builtin type with the same message
(a learner's ``class MyError(ValueError)`` arrives as ``ValueError``), and warnings are re-issued.

A worker that times out, crashes, exits or is killed is killed with everything it started; the
call raises ``SandboxError`` (no builtin type, so ``pytest.raises(ValueError)`` never takes it for
an answer) and the event is recorded for the grading report. The next call starts a fresh worker
(up to ``max_restarts`` times): proxies of the module and of its attributes reconnect by name,
objects built before the crash are gone.

Not supported across the boundary: passing callables or arbitrary objects from the tests to the
learner's code (e.g. an ``on_text`` callback), ``isinstance(x, RemoteClass)``, and subclassing a
remote class. Generators and iterators work through proxies (``for piece in bot.chat_stream(...)``).
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_course.grading import protocol, sandbox, scratch

GRADING_ENV = "VLM_COURSE_GRADING_WORKER"
MAX_REPLY = 64 * 1024 * 1024  # bytes of one answer from a worker (checked here, whatever the worker runs)
MAX_ITEMS = 1_000_000  # values in one answer (a list of ten million numbers is refused before parsing)
MAX_TEXT = 8000  # characters of an exception message or traceback kept from the worker
MAX_WARNINGS = 50  # warnings re-issued per call
SIGNALS = {
    signal.SIGKILL: "killed (SIGKILL: the memory limit, the process limit or the grader)",
    signal.SIGSEGV: "crashed (segmentation fault, e.g. out of memory in native code)",
    signal.SIGXCPU: "stopped by the CPU-time limit",
    signal.SIGXFSZ: "stopped by the file-size limit",
    signal.SIGABRT: "aborted (SIGABRT)",
    signal.SIGBUS: "crashed (bus error)",
}


class SandboxError(Exception):
    """The sandboxed worker failed (timed out, crashed, exited, was killed); the message says how."""


class RemoteError(Exception):
    """Learner code raised something that is not a builtin exception (e.g. SystemExit)."""


@dataclass
class SessionConfig:
    """What the grader tells the trusted test process (a JSON file named by $VLM_COURSE_GRADING_WORKER)."""

    source_dir: str  # the submission's allowed files (trusted side only; each worker gets copies)
    scratch: str  # the folder (a tmpfs in namespace mode) where worker folders are made
    shared_dirs: list[str] = field(default_factory=list)  # read-write for tests and workers (pytest's tmp_path)
    hidden: list[str] = field(default_factory=list)
    uid_base: int = sandbox.BASE_UID
    mode: str = "auto"
    limits: dict = field(default_factory=dict)
    call_timeout: float = 300.0
    deadline: float | None = None  # time.time() after which no call starts
    max_restarts: int = 2
    report: str | None = None  # where the plugin writes its report
    scratch_mb: int = 1024  # size of the scratch tmpfs (namespace mode)
    start: str = "spawn"  # "fork": workers are forked from this process's worker server (forkserver)
    preload: list[str] = field(default_factory=list)  # what a worker server imports first (forkserver.preload)

    @classmethod
    def from_env(cls) -> SessionConfig:
        path = os.environ.get(GRADING_ENV)
        if not path:
            raise RuntimeError(f"${GRADING_ENV} is not set: this process is not grading")
        return cls.read(path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> SessionConfig:
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1), encoding="utf-8")


# ---- the trusted side's own time limit ---------------------------------------------------------------


class Watchdog:
    """A time limit on test code between two calls into the worker (SIGALRM, main thread only).

    Test code that opens a FIFO the worker left in ``tmp_path``, or reads a file it keeps growing,
    would otherwise block the trusted process until the whole submission times out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(1.0, float(seconds))
        self.active = False

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGALRM, self._fire)
        self.active = True
        self.resume()

    def resume(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def pause(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def stop(self) -> None:
        self.pause()
        self.active = False

    def _fire(self, signum, frame) -> None:
        self.active = False
        raise SandboxError(f"the test was stuck for {self.seconds:.0f} s outside the learner's code (e.g. opening a "
                           "FIFO the submission left in a shared folder) and was stopped")


# ---- captured output --------------------------------------------------------------------------------


class OutputBuffer:
    """Reads a process's output in a thread, keeping at most ``cap`` bytes (the rest is counted):
    the first ``cap`` bytes, or with ``tail=True`` the last ones."""

    def __init__(self, fd: int, cap: int, tail: bool = False) -> None:
        self.fd, self.cap, self.tail = fd, cap, tail
        self.kept = bytearray()
        self.dropped = 0
        self._taken = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"worker-output-{fd}")
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            with self._lock:
                if self.tail:
                    self.kept += chunk
                    extra = len(self.kept) - self.cap
                    if extra > 0:
                        del self.kept[:extra]
                        self.dropped += extra
                    continue
                room = self.cap - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
                self.dropped += max(0, len(chunk) - max(room, 0))
        os.close(self.fd)

    def take(self) -> str:
        """Output since the last ``take()``."""
        with self._lock:
            new = bytes(self.kept[self._taken:])
            self._taken = len(self.kept)
        return new.decode("utf-8", errors="replace")

    def text(self) -> str:
        with self._lock:
            out = bytes(self.kept).decode("utf-8", errors="replace")
            if self.dropped:
                out += f"\n[... {self.dropped} more bytes of output dropped (limit {self.cap} bytes)]"
            return out


# ---- one worker -------------------------------------------------------------------------------------


class Worker:
    """One sandboxed process serving one learner module; restarted (new generation) after a failure."""

    def __init__(self, session: RemoteSession, module: str) -> None:
        self.session, self.module = session, module
        self.generation = 0
        self.restarts = -1  # the first start is not a restart
        self.launched: sandbox.Launched | None = None
        self.output: OutputBuffer | None = None
        self.dead: str | None = None  # why the current generation is unusable
        self.failures: list[str] = []
        self._release: list[int] = []
        self._proxies: weakref.WeakValueDictionary[int, RemoteObject] = weakref.WeakValueDictionary()

    @property
    def alive(self) -> bool:
        return self.launched is not None and self.dead is None

    def ensure(self) -> None:
        __tracebackhide__ = True  # pytest: show the test's line, not the proxy's
        if self.alive:
            return
        if self.session.out_of_time():
            raise SandboxError(f"{self.module}.py: the grading time budget for this submission is used up")
        if self.restarts >= self.session.config.max_restarts:
            raise SandboxError(
                f"{self.module}.py: gave up after {len(self.failures)} worker failures ({'; '.join(self.failures[-2:])})"
            )
        self.start()

    def start(self) -> None:
        cfg = self.session.config
        self.restarts += 1
        self.generation += 1
        self.dead = None
        self._proxies = weakref.WeakValueDictionary()
        self._release = []
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        os.set_blocking(self.req_w, False)
        limits = sandbox.Limits(**cfg.limits)
        uid = cfg.uid_base + self.session.uid_offset(self.module)
        work_dir = self._fresh_folder(uid)
        spec = sandbox.SandboxSpec(
            work_dir=work_dir, shared_dirs=[Path(p) for p in cfg.shared_dirs],
            hidden=[Path(p) for p in cfg.hidden], uid=uid, mode=cfg.mode, limits=limits,
        )
        config = {"request_fd": req_r, "reply_fd": rep_w, "work_dir": str(work_dir), "limits": limits.as_dict()}
        try:
            self.launched = sandbox.launch(spec, config, pass_fds=(req_r, rep_w), stdout=out_w, server=_WORKER_SERVER)
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        self.uid = uid
        self.output = OutputBuffer(out_r, limits.output_kb * 1024)
        self.session.protections = self.launched.protections

    def _fresh_folder(self, uid: int) -> Path:
        """A new folder for this generation, owned by the worker's uid from the start, holding copies of
        the submission's files (read from the trusted source folder, written without following links)."""
        cfg = self.session.config
        drop = os.geteuid() == 0
        folder = scratch.new_dir(Path(cfg.scratch), f"work-{self.module}-{self.generation}", uid if drop else None)
        source = Path(cfg.source_dir)
        for name in sorted(os.listdir(source)):
            with open(os.path.join(source, name), "rb") as f:
                scratch.write_file(folder, name, f.read(), uid if drop else None, 0o600)
        scratch.new_dir(folder, ".tmp", uid if drop else None)
        return folder

    def kill(self, why: str, kind: str) -> None:
        if self.launched is not None:
            self.launched.kill()
            self.session.reap()
        if self.output is not None:
            self.output.thread.join(timeout=5)
        for fd in (getattr(self, "req_w", None), getattr(self, "rep_r", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req_w = self.rep_r = None
        if self.dead is None:
            self.dead = why
            self.failures.append(why)
            self.session.event(self.module, kind, why)

    def close(self) -> None:
        """End this worker politely, then kill whatever is left."""
        if self.alive:
            others = {w.launched.popen.pid for w in self.session.workers.values() if w is not self and w.launched is not None}
            left = self.launched.leftovers(others)
            if left:
                self.session.event(self.module, "daemon", f"left {left} process(es) running after its tests; they were killed")
            try:
                protocol.send(self.req_w, {"op": "bye"}, timeout=2)
                protocol.receive(self.rep_r, timeout=5)
                self.launched.popen.wait(timeout=10)  # a clean exit (its CPU time is then accounted to us)
            except (protocol.ProtocolError, subprocess.TimeoutExpired):
                pass
        if self.launched is not None:
            self.launched.kill()
            self.session.reap()
        if self.output is not None:
            self.output.thread.join(timeout=5)
        self.dead = self.dead or "closed"

    def _exit_reason(self) -> str:
        popen = self.launched.popen
        try:
            rc = popen.wait(timeout=10)
        except Exception:  # noqa: BLE001 - still running: kill it below
            return "stopped answering"
        if self.launched.mode == "namespace" and rc > 128:
            rc = -(rc - 128)  # the namespace's sh reports the worker's signal as 128 + n
        if rc < 0:
            return SIGNALS.get(-rc, f"killed by signal {-rc}")
        if rc == 0:
            return "exited with status 0 (os._exit or sys.exit in the submission?)"
        return f"exited with status {rc}"

    def request(self, message: dict, what: str, timeout: float | None = None) -> dict:
        """Send one request and wait for its answer; SandboxError if the worker fails meanwhile."""
        __tracebackhide__ = True
        self.session.watchdog.pause()  # starting a worker and the call have time limits of their own
        try:
            self.ensure()
        except BaseException:
            self.session.watchdog.resume()
            raise
        budget = self.session.call_budget() if timeout is None else timeout
        if self._release:
            message["release"], self._release = self._release, []
        for folder in self.session.config.shared_dirs:  # what the test just wrote, readable by the worker
            scratch.open_to_workers(Path(folder))
        try:
            protocol.send(self.req_w, message, timeout=budget)
            reply = protocol.receive(self.rep_r, timeout=budget, limit=MAX_REPLY, max_items=MAX_ITEMS)
        except protocol.ChannelTimeout:
            why = f"{what} did not finish within {budget:.0f} s (infinite loop? the worker was killed)"
            self.kill(why, "timeout")
            raise SandboxError(why) from None
        except protocol.ChannelClosed:
            why = f"the worker {self._exit_reason()} during {what}"
            self.kill(why, "crash")
            raise SandboxError(why) from None
        except protocol.ProtocolError as exc:
            why = f"the worker sent a broken answer during {what} ({exc}); it was killed"
            self.kill(why, "protocol")
            raise SandboxError(why) from None
        finally:
            self.session.watchdog.resume()
        return reply

    def release(self, n: int, generation: int) -> None:
        if generation == self.generation and self.alive:
            self._release.append(n)

    def proxy(self, tagged: dict, path: tuple | None) -> RemoteObject:
        n = tagged.get("id")
        if not isinstance(n, int):
            raise protocol.ProtocolError("reference without a number")
        found = self._proxies.get(n)
        if found is not None:
            return found
        obj = RemoteObject._make(self, n, self.generation, tagged, path)
        self._proxies[n] = obj
        return obj


# ---- the session ------------------------------------------------------------------------------------


class RemoteSession:
    """All workers of one trusted test process (one submission)."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.workers: dict[str, Worker] = {}
        self.events: list[dict] = []
        self.current_test: str | None = None
        self.protections: dict | None = None
        self.watchdog = Watchdog(config.call_timeout)
        self._uids: dict[str, int] = {}

    def uid_offset(self, module: str) -> int:
        """A uid of its own per module (kept across restarts), so two workers never share RLIMIT_NPROC."""
        return self._uids.setdefault(module, len(self._uids) % sandbox.UID_BLOCK)

    def reap(self) -> None:
        """Process mode: kill daemons our workers left (adopted by this process as subreaper)."""
        if self.protections and self.protections.get("mode") == "process":
            live = {w.launched.popen.pid for w in self.workers.values() if w.alive and w.launched is not None}
            sandbox.reap_orphans(live)

    def out_of_time(self) -> bool:
        return self.config.deadline is not None and time.time() >= self.config.deadline

    def call_budget(self) -> float:
        budget = float(self.config.call_timeout)
        if self.config.deadline is not None:
            budget = min(budget, max(1.0, self.config.deadline - time.time()))
        return budget

    def event(self, module: str, kind: str, detail: str) -> None:
        self.events.append({"module": module, "kind": kind, "detail": detail, "test": self.current_test})

    def worker(self, module: str) -> Worker:
        if module not in self.workers:
            self.workers[module] = Worker(self, module)
        return self.workers[module]

    def import_module(self, module: str) -> RemoteObject:
        return _import(self.worker(module), module)

    def take_output(self) -> str:
        parts = []
        for name, w in self.workers.items():
            if w.output is not None:
                text = w.output.take()
                if text:
                    parts.append(text if len(self.workers) == 1 else f"[{name}.py] {text}")
        return "".join(parts)

    def output_text(self) -> dict[str, str]:
        return {name: w.output.text() for name, w in self.workers.items() if w.output is not None}

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
            if w.output is not None and w.output.dropped:
                self.event(w.module, "output", f"{w.output.dropped} bytes of output beyond {w.output.cap} were dropped")


_SESSION: RemoteSession | None = None
_WORKER_SERVER = None  # forkserver.Client of this trusted process, when its workers are forked


def set_worker_server(client) -> None:
    """Fork this process's workers from ``client`` (a ``forkserver.Client``) from now on."""
    global _WORKER_SERVER
    _WORKER_SERVER = client


def close_worker_server() -> None:
    global _WORKER_SERVER
    if _WORKER_SERVER is not None:
        _WORKER_SERVER.close()
        _WORKER_SERVER = None


def session() -> RemoteSession:
    """This process's grading session (from $VLM_COURSE_GRADING_WORKER)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = RemoteSession(SessionConfig.from_env())
    return _SESSION


def grading() -> bool:
    """True inside a test process started by ``vlm-course grade``."""
    return bool(os.environ.get(GRADING_ENV))


# ---- values and errors --------------------------------------------------------------------------------


def _encode_args(value: Any, worker: Worker) -> Any:
    def ref(obj: Any) -> dict:
        if isinstance(obj, RemoteObject):
            if obj._worker is not worker or obj._generation != worker.generation:
                raise SandboxError("an object from another (or a restarted) worker cannot be passed here")
            return {protocol.TAG: "ref", "id": obj._id}
        return protocol.encode(obj)  # raises TypeError naming the type

    return protocol.encode(value, ref)


def _decode(data: Any, worker: Worker, path: tuple | None = None, label: str | None = None) -> Any:
    def resolve(tagged: dict) -> RemoteObject:
        obj = worker.proxy(tagged, path if tagged.get("kind") != "object" else None)
        if label and obj._name is None:
            object.__setattr__(obj, "_name", label)
        return obj

    return protocol.decode(data, resolve)


def rebuild_exception(err: dict, where: str) -> BaseException:
    """The worker's exception as the nearest builtin Exception type, with its message and traceback."""
    message = str(err.get("message", ""))[:MAX_TEXT]
    args = err.get("args")
    try:
        args = protocol.decode(args) if args is not None else None
    except protocol.ProtocolError:
        args = None
    kind = str(err.get("type", "Exception"))[:200]
    for name in err.get("mro") or []:
        cls = getattr(builtins, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            continue
        exc = None
        for attempt in ((tuple(args),) if isinstance(args, (list, tuple)) else ()) + ((message,),):
            try:
                candidate = cls(*attempt)
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
                continue
            if str(candidate) == message or attempt == (message,):
                exc = candidate
                break
        if exc is None:
            continue
        exc.vlm_from_submission = True
        if kind != cls.__name__:
            exc.add_note(f"(raised in the sandbox as {kind})")
        if err.get("traceback"):
            exc.add_note(f"traceback in the sandboxed worker ({where}):\n{str(err['traceback'])[-MAX_TEXT:]}")
        return exc
    exc = RemoteError(f"{where} raised {kind}: {message}")
    exc.vlm_from_submission = True
    if err.get("traceback"):
        exc.add_note(f"traceback in the sandboxed worker:\n{str(err['traceback'])[-MAX_TEXT:]}")
    return exc


def _answer(worker: Worker, reply: dict, where: str, path: tuple | None = None, label: str | None = None) -> Any:
    __tracebackhide__ = True
    found = reply.get("warnings")
    for w in found[:MAX_WARNINGS] if isinstance(found, list) else []:
        if not isinstance(w, dict):
            continue
        category = getattr(builtins, str(w.get("category")), UserWarning)
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category = UserWarning
        warnings.warn_explicit(str(w.get("message", ""))[:MAX_TEXT], category, str(w.get("filename", "<sandbox>"))[:500],
                               int(w.get("lineno") or 0) if str(w.get("lineno", "0")).isdigit() else 0)
    if "error" in reply:
        err = reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
        raise rebuild_exception(err, where)
    try:
        return _decode(reply.get("ok"), worker, path, label)
    except protocol.ProtocolError as exc:
        why = f"the worker sent a value that cannot be decoded during {where} ({exc})"
        worker.kill(why, "protocol")
        raise SandboxError(why) from None


def _import(worker: Worker, module: str) -> RemoteObject:
    __tracebackhide__ = True
    where = f"importing {module}.py"
    reply = worker.request({"op": "import", "module": module}, where)
    return _answer(worker, reply, where, path=(module,))


# ---- proxies --------------------------------------------------------------------------------------------


class RemoteObject:
    """An object held by the sandboxed worker. Attribute access, calls and the usual protocols
    (len, iter/next, [], in, bool, repr, str) are forwarded; the answers come back as values."""

    __slots__ = ("_worker", "_id", "_generation", "_info", "_path", "_name", "__weakref__")

    @classmethod
    def _make(cls, worker: Worker, n: int, generation: int, info: dict, path: tuple | None) -> RemoteObject:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_worker", worker)
        object.__setattr__(obj, "_id", n)
        object.__setattr__(obj, "_generation", generation)
        object.__setattr__(obj, "_info", info)
        object.__setattr__(obj, "_path", path)
        object.__setattr__(obj, "_name", ".".join(path) if path else None)
        return obj

    def _label(self) -> str:
        """How messages name this object: ``image_search.CLIPImageSearch``, ``CLIPImageSearch.search``..."""
        return self._name or f"{self._info.get('type', 'object')} object"

    def _short(self) -> str:
        return self._name or str(self._info.get("type", "object"))

    def _live(self) -> RemoteObject:
        """This proxy, or (after a worker restart) the same module attribute in the new worker."""
        __tracebackhide__ = True
        w = self._worker
        if self._generation == w.generation and w.alive:
            return self
        if self._path is None:
            raise SandboxError(
                f"this {self._label()} lived in a sandboxed worker that has since failed "
                f"({w.dead or (w.failures[-1] if w.failures else 'closed')}); it is gone"
            )
        w.ensure()
        obj = _import(w, self._path[0])
        for name in self._path[1:]:
            obj = obj._request_attr(name)
        return obj

    def _call(self, message: dict, what: str, path: tuple | None = None, label: str | None = None) -> Any:
        __tracebackhide__ = True
        live = self._live()
        message["ref"] = {"id": live._id}
        reply = live._worker.request(message, what)
        return _answer(live._worker, reply, what, path, label)

    def _request_attr(self, name: str) -> Any:
        __tracebackhide__ = True
        path = self._path + (name,) if self._path else None
        label = f"{self._short()}.{name}"
        return self._call({"op": "getattr", "name": name}, label, path, label)

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if name.startswith("__") and name.endswith("__") and name not in ("__name__", "__qualname__", "__doc__", "__module__"):
            raise AttributeError(name)
        return self._request_attr(name)

    def __setattr__(self, name: str, value: Any) -> None:
        __tracebackhide__ = True
        live = self._live()
        self._call({"op": "setattr", "name": name, "value": _encode_args(value, live._worker)}, f"setting {self._label()}.{name}")

    def __delattr__(self, name: str) -> None:
        __tracebackhide__ = True
        self._call({"op": "delattr", "name": name}, f"deleting {self._label()}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        live = self._live()
        return self._call(
            {"op": "call", "args": _encode_args(list(args), live._worker), "kwargs": _encode_args(kwargs, live._worker)},
            f"{self._label()}(...)",
        )

    def _method(self, name: str, *args: Any) -> Any:
        __tracebackhide__ = True
        live = self._live()
        return self._call({"op": "method", "name": name, "args": _encode_args(list(args), live._worker)},
                          f"{self._label()}.{name}")

    def _builtin(self, name: str, *args: Any) -> Any:
        __tracebackhide__ = True
        live = self._live()
        return self._call({"op": "builtin", "name": name, "args": _encode_args(list(args), live._worker)},
                          f"{name}({self._label()})")

    def __len__(self) -> int:
        __tracebackhide__ = True
        return self._builtin("len")

    def __iter__(self):
        __tracebackhide__ = True
        return self._builtin("iter")

    def __next__(self):
        __tracebackhide__ = True
        return self._builtin("next")

    def __getitem__(self, key: Any) -> Any:
        __tracebackhide__ = True
        return self._method("__getitem__", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        __tracebackhide__ = True
        self._method("__setitem__", key, value)

    def __contains__(self, item: Any) -> bool:
        __tracebackhide__ = True
        return self._method("__contains__", item)

    def __bool__(self) -> bool:
        __tracebackhide__ = True
        return self._builtin("bool")

    def __str__(self) -> str:
        try:
            return self._builtin("str")
        except Exception:  # noqa: BLE001 - printing must not fail
            return self.__repr__()

    def __repr__(self) -> str:
        try:
            return self._builtin("repr")
        except Exception:  # noqa: BLE001 - e.g. the worker is gone
            return f"<remote {self._label()}>"

    def __del__(self) -> None:
        try:
            self._worker.release(self._id, self._generation)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _submission_problem(message: str) -> BaseException:
    """A test failure (pytest's ``Failed``) that says what is wrong with the submission itself (a missing
    file or name, an import error): shown to the learner even for hidden tests."""
    import pytest

    class SubmissionProblem(pytest.fail.Exception):
        pass

    exc = SubmissionProblem(message, pytrace=False)
    exc.vlm_public = True
    return exc


# ---- what the exercise fixtures return when grading ----------------------------------------------------------


class RemoteSubmission:
    """Stands in for the exercise conftest's ``Submission``: ``load`` and ``attribute`` answer with proxies."""

    def __init__(self, remote: RemoteSession) -> None:
        self.remote = remote
        self.folder = Path(remote.config.source_dir)
        self._modules: dict[str, Any] = {}

    def load(self, module: str):
        if module not in self._modules:
            try:
                if not (self.folder / f"{module}.py").is_file():
                    self._modules[module] = f"{module}.py is missing from the submission"
                    self.remote.event(module, "missing", "the file is missing from the submission")
                else:
                    self._modules[module] = self.remote.import_module(module)
            except SandboxError as exc:
                self._modules[module] = f"{module}.py could not be imported: {exc}"
            except Exception as exc:  # noqa: BLE001 - the learner's import error
                tb = "".join(getattr(exc, "__notes__", []))
                self._modules[module] = f"importing {module}.py failed with {type(exc).__name__}: {exc}\n{tb}".strip()
                self.remote.event(module, "import", f"importing failed with {type(exc).__name__}: {exc}"[:500])
        found = self._modules[module]
        if isinstance(found, str):
            raise _submission_problem(found)
        return found

    def attribute(self, module: str, name: str):
        mod = self.load(module)
        try:
            return getattr(mod, name)
        except AttributeError:
            raise _submission_problem(f"{module}.py must define {name}") from None
        except SandboxError as exc:
            raise _submission_problem(str(exc)) from None

    def __repr__(self) -> str:
        return f"RemoteSubmission({self.folder})"


def remote_submission() -> RemoteSubmission:
    """The submission under grading, reached through sandboxed workers."""
    global _SUBMISSION
    if _SUBMISSION is None:
        _SUBMISSION = RemoteSubmission(session())
    return _SUBMISSION


_SUBMISSION: RemoteSubmission | None = None
