"""The sandboxed worker: imports one learner module and runs the calls the trusted test process asks for.

Started by ``vlm_course.grading.remote`` as ``python -I -B -m vlm_course.grading.worker CONFIG_JSON``
inside the sandbox. It applies its resource limits before any learner code runs, then answers
requests (JSON, see ``protocol``) read from ``request_fd`` on ``reply_fd``; the learner's prints go
to stdout/stderr, which the grader captures separately. Nothing here decides a grade: whatever this
process answers is only data that the trusted tests check.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from vlm_course import submission
from vlm_course.grading import protocol

MAX_TRACEBACK = 6000
BUILTIN_OPS = {"len": len, "iter": iter, "next": next, "repr": repr, "str": str, "bool": bool, "dir": dir}


def apply_limits(limits: dict, preloaded_bytes: int = 0) -> None:
    """CPU time, address space, processes (of this uid) and file size, before any learner code runs.

    ``preloaded_bytes``: address space the process already uses for libraries imported before it was
    forked (torch, transformers); the memory limit comes on top of it."""
    try:
        import resource
    except ImportError:  # not POSIX
        return

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        # the hard limit too, so that learner code cannot raise the soft one back
        hard = soft if hard is None else hard
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass

    cap(resource.RLIMIT_CPU, int(limits["cpu_s"]), int(limits["cpu_s"]) + 5)  # SIGXCPU, then SIGKILL
    cap(resource.RLIMIT_FSIZE, int(limits["fsize_mb"]) * 1024 * 1024)
    cap(resource.RLIMIT_CORE, 0)
    memory = int(limits["memory_mb"]) * 1024 * 1024 + max(0, int(preloaded_bytes))
    cap(getattr(resource, "RLIMIT_AS", resource.RLIMIT_DATA), memory)
    if hasattr(resource, "RLIMIT_NPROC"):
        cap(resource.RLIMIT_NPROC, int(limits["nproc"]) + _tasks_of_this_uid())


def _tasks_of_this_uid() -> int:
    """Processes and threads this uid already runs elsewhere (RLIMIT_NPROC counts them all)."""
    uid = os.getuid()
    count = 0
    try:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid != str(os.getpid()):
                try:
                    if os.stat(f"/proc/{pid}").st_uid == uid:
                        count += len(os.listdir(f"/proc/{pid}/task"))
                except OSError:
                    pass
    except OSError:
        return 0
    return count


class Worker:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}
        self.next_id = 1

    # ---- references ----
    def ref(self, obj: Any) -> dict:
        key = id(obj)
        n = self.ids.get(key)
        if n is None or self.objects.get(n) is not obj:
            n = self.next_id
            self.next_id += 1
            self.objects[n] = obj
            self.ids[key] = n
        kind = "class" if isinstance(obj, type) else "module" if type(obj).__name__ == "module" else "object"
        return {protocol.TAG: "ref", "id": n, "type": type(obj).__qualname__, "name": getattr(obj, "__qualname__", None)
                if kind != "object" else None, "kind": kind, "callable": callable(obj)}

    def lookup(self, data: dict) -> Any:
        n = data.get("id")
        if n not in self.objects:
            raise LookupError(f"object #{n} is no longer held by the worker")
        return self.objects[n]

    def release(self, ids: list) -> None:
        for n in ids:
            obj = self.objects.pop(n, None)
            if obj is not None and self.ids.get(id(obj)) == n:
                del self.ids[id(obj)]

    def encode(self, value: Any) -> Any:
        return protocol.encode(value, self.ref)

    def decode(self, data: Any) -> Any:
        return protocol.decode(data, self.lookup)

    # ---- requests ----
    def import_module(self, name: str) -> Any:
        if not name.isidentifier():
            raise ValueError(f"bad module name {name!r}")
        path = self.work_dir / f"{name}.py"
        if not path.is_file():
            raise FileNotFoundError(f"{name}.py is missing from the submission")
        try:
            return submission.import_file(path, name)
        except submission.SubmissionError as exc:  # the learner's own exception goes back as it was raised
            if exc.__cause__ is not None:
                raise exc.__cause__ from None
            raise

    def handle(self, request: dict) -> Any:
        op = request.get("op")
        self.release(request.get("release") or [])
        if op == "import":
            return self.import_module(str(request.get("module")))
        if op == "ping":
            return "pong"
        target = self.lookup(request.get("ref") or {})
        if op == "getattr":
            return getattr(target, str(request["name"]))
        if op == "setattr":
            setattr(target, str(request["name"]), self.decode(request.get("value")))
            return None
        if op == "delattr":
            delattr(target, str(request["name"]))
            return None
        args = self.decode(request.get("args") or [])
        kwargs = self.decode(request.get("kwargs") or {})
        if op == "call":
            return target(*args, **kwargs)
        if op == "method":  # special methods (__getitem__, __contains__, ...) looked up on the type
            return getattr(type(target), str(request["name"]))(target, *args, **kwargs)
        if op == "builtin":
            fn = BUILTIN_OPS.get(str(request.get("name")))
            if fn is None:
                raise ValueError(f"unknown builtin {request.get('name')!r}")
            return fn(target, *args)
        raise ValueError(f"unknown request {op!r}")


def describe_error(exc: BaseException, worker: Worker) -> dict:
    mro = [c.__name__ for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c]
    raw_args = exc.args
    if isinstance(exc, OSError) and exc.filename is not None:  # args lack the file name
        raw_args = (exc.errno, exc.strerror, exc.filename) + ((None, exc.filename2) if exc.filename2 is not None else ())
    try:
        args = protocol.encode(raw_args)
    except TypeError:
        args = None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() != Path(__file__).resolve()]
    text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a learner's __str__ may fail
        message = f"<{type(exc).__name__} whose str() failed>"
    return {"type": type(exc).__qualname__, "mro": mro, "args": args, "message": message[:MAX_TRACEBACK],
            "traceback": text[-MAX_TRACEBACK:]}


def _warning_record(w: warnings.WarningMessage) -> dict:
    category = w.category.__name__ if getattr(builtins, w.category.__name__, None) is w.category else "UserWarning"
    return {"category": category, "message": str(w.message)[:MAX_TRACEBACK], "filename": str(w.filename), "lineno": int(w.lineno or 0)}


def serve(request_fd: int, reply_fd: int, work_dir: Path) -> int:
    worker = Worker(work_dir)
    sys.path.insert(0, str(work_dir))
    while True:
        try:
            request = protocol.receive(request_fd)
        except protocol.ChannelClosed:
            return 0
        if request.get("op") == "bye":
            protocol.send(reply_fd, {"ok": None, "warnings": []})
            return 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = worker.handle(request)
                reply = {"ok": worker.encode(value)}
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the trusted side
                reply = {"error": describe_error(exc, worker)}
        reply["warnings"] = [_warning_record(w) for w in caught[:50]]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        try:
            protocol.send(reply_fd, reply)
        except protocol.ProtocolError as exc:  # e.g. an answer too large: say so instead
            protocol.send(reply_fd, {"error": {"type": "ValueError", "mro": ["ValueError", "Exception", "BaseException"],
                                               "args": None, "message": f"the answer cannot be sent back: {exc}",
                                               "traceback": ""}, "warnings": []})


def address_space_bytes() -> int:
    """This process's address space now (``VmSize``), 0 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def main_forked(config: dict) -> int:
    """The worker in a process forked from a worker server (``sandbox.sandboxed_child``): the memory
    limit counts on top of the libraries it was forked with."""
    apply_limits(config["limits"], preloaded_bytes=address_space_bytes())
    sys.stdin = io.StringIO()
    work_dir = Path(config["work_dir"])
    os.chdir(work_dir)
    return serve(int(config["request_fd"]), int(config["reply_fd"]), work_dir)


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv or sys.argv[1:])[0])
    apply_limits(config["limits"])
    sys.stdin = io.StringIO()
    work_dir = Path(config["work_dir"])
    os.chdir(work_dir)
    return serve(int(config["request_fd"]), int(config["reply_fd"]), work_dir)


if __name__ == "__main__":
    sys.exit(main())
