"""Fork servers: start grading processes without importing torch and transformers each time.

Importing torch and transformers costs seconds of CPU, and a submission needs three processes that
import them (the trusted test process and one worker per exercise file). A fork server imports them
once and then forks the processes it is asked for:

- the **class server** is started by ``vlm-course grade`` for the whole class run, before any
  learner code runs (``python -I -B -m vlm_course.grading.forkserver FD``, with a scrubbed
  environment: no tokens ever enter its memory). It forks the trusted test process of each
  submission (``trusted.run_forked``);
- each trusted test process forks a **worker server** of its own at its start, after mounting the
  scratch tmpfs and before it reads its environment or imports any test: that one forks the
  sandboxed workers (``sandbox.sandboxed_child``), which get the full sandbox as before
  (namespaces, uid, limits, scratch folder).

No learner code ever runs in a server, so nothing one submission does can reach another: every
worker is a fresh copy of a process that only imported libraries. A forked process is handed to
whoever asked for it: the server forks a short-lived child that forks the process and exits, so
the process is adopted by the asker (a child subreaper, ``sandbox.become_subreaper``), which then
waits for it and kills it like a child of its own (``ForkedProcess``).

Requests are JSON over a Unix socket pair, with the new process's file descriptors passed along
(``SCM_RIGHTS``); the answer is the new process's pid.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

BASE_PRELOAD = (  # always: the grading side itself and what pytest needs
    "pytest", "_pytest.python", "_pytest.tmpdir", "vlm_course.submission",
    "vlm_course.grading.plugin", "vlm_course.grading.remote", "vlm_course.grading.worker",
    "vlm_course.grading.trusted",
)
MAX_MESSAGE = 1 << 20
REPLY_TIMEOUT = 60.0  # seconds a fork may take (it takes milliseconds; a stuck server is given up)
MAX_FDS = 8
SERVER_ENV_KEYS = ("LANG", "LC_ALL")
FIXED_ENV = {  # the class server's whole environment (besides LANG): nothing secret, offline, CPU only
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "VLM_COURSE_PROFILE": "toy", "VLM_COURSE_DEVICE": "cpu",
    "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1",
}


class ForkServerError(RuntimeError):
    """The fork server is gone or refused a request."""


def supported() -> bool:
    """Fork servers need Linux (``os.fork`` with subreapers and ``SCM_RIGHTS``)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


# ---- a process adopted from a fork server ----------------------------------------------------------------


class ForkedProcess:
    """A ``subprocess.Popen``-like handle of a child this process adopted (``pid``, ``poll``, ``wait``,
    ``returncode``, ``args``)."""

    def __init__(self, pid: int, args: str = "forked") -> None:
        self.pid, self.args = pid, args
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _reap(self, flags: int) -> int | None:
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped elsewhere: it has ended, how is unknown
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            return self._reap(0)
        deadline = time.monotonic() + timeout
        try:
            pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            pidfd = None
        try:
            while (rc := self.poll()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                if pidfd is not None:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(0.05, left))
            return rc
        finally:
            if pidfd is not None:
                os.close(pidfd)


# ---- the server side -------------------------------------------------------------------------------------


def imports_of(paths: Sequence[str | os.PathLike]) -> list[str]:
    """What the test files import, anywhere in them (``torch``, ``transformers:CLIPModel`` for
    ``from transformers import CLIPModel``): what a fork server preloads for them. Relative imports
    and files that do not parse are skipped."""
    import ast

    found: dict[str, None] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, None)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.setdefault(node.module, None)
                for alias in node.names:
                    if alias.name != "*":
                        found.setdefault(f"{node.module}:{alias.name}", None)
    return list(found)


def preload(modules: Sequence[str] = ()) -> None:
    """Import ``BASE_PRELOAD`` and ``modules`` (``module`` or ``module:attribute``, e.g. the lazily loaded
    ``transformers:CLIPModel``; whatever fails to import is skipped), then freeze the heap, so that the
    forked processes share it and copy fewer pages."""
    import importlib

    for name in [*BASE_PRELOAD, *modules]:
        module, _, attr = name.partition(":")
        try:
            mod = importlib.import_module(module)
            if attr:
                getattr(mod, attr)
        except Exception:  # noqa: BLE001 - e.g. a module of the tests folder itself: imported by pytest later
            pass
    gc.collect()
    gc.freeze()


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def serve(sock: socket.socket, handlers: dict[str, Callable[[dict, list[int]], int]]) -> None:
    """Answer fork requests on ``sock`` until it closes. ``handlers[kind](request, fds)`` runs in the
    new process (as the grandchild of this one) and returns its exit status."""
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
        except OSError:
            return
        if not message:
            return
        try:
            request = json.loads(message)
            handler = handlers[request["kind"]]
        except (ValueError, KeyError, TypeError) as exc:
            _close_all(fds)
            sock.sendall(json.dumps({"error": f"bad request: {exc}"}).encode())
            continue
        pid_r, pid_w = os.pipe()
        go_r, go_w = os.pipe()
        middle = os.fork()
        if middle == 0:  # the short-lived middle process: forks the target, says its pid, exits
            code = 70
            try:
                sock.detach()
                os.close(pid_r)
                os.close(go_w)
                before = request.get("unshare", 0)
                if before:
                    unshare(before)
                child = os.fork()
                if child == 0:
                    os.close(pid_w)  # the server reads the pid until every writer has closed it
                    _read_exact(go_r, 1)  # adopted by the asker by now
                    close_fds_except(fds)  # the server's socket and pipes never reach the new process
                    code = 70
                    try:
                        code = handler(request, fds)
                    except BaseException:  # noqa: BLE001 - said on the new process's stderr (its log)
                        import traceback

                        traceback.print_exc()
                        sys.stderr.flush()
                    finally:
                        os._exit(code)
                os.write(pid_w, str(child).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(pid_w)
        os.close(go_r)
        _close_all(fds)
        raw = _read_exact(pid_r, 32)
        os.close(pid_r)
        _, status = os.waitpid(middle, 0)
        if os.waitstatus_to_exitcode(status) != 0 or not raw.isdigit():
            os.close(go_w)
            sock.sendall(json.dumps({"error": f"the fork failed (status {os.waitstatus_to_exitcode(status)})"}).encode())
            continue
        pid = int(raw)
        os.write(go_w, b"g")  # the middle process has exited: the new process belongs to the asker now
        os.close(go_w)
        sock.sendall(json.dumps({"pid": pid}).encode())


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def unshare(flags: int) -> None:
    """``unshare(2)`` for this process; OSError if refused."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare failed: {os.strerror(err)}")


def close_fds_except(keep: Sequence[int]) -> None:
    """Close every file descriptor but ``keep`` and 0-2: nothing of a server's reaches a child."""
    start = 3
    for fd in sorted({fd for fd in keep if fd > 2}):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, max(start + 1, os.sysconf("SC_OPEN_MAX")))


def attach_stdio(out: int) -> None:
    """Standard input from /dev/null, standard output and error to ``out`` (which is then closed)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


# ---- the asker's side ------------------------------------------------------------------------------------


class Client:
    """Asks a fork server (over ``sock``) for processes; one request at a time, from any thread."""

    def __init__(self, sock: socket.socket, server: ForkedProcess | subprocess.Popen) -> None:
        self.sock, self.server = sock, server
        self.broken: str | None = None
        self._lock = threading.Lock()

    def fork(self, kind: str, request: dict, fds: Sequence[int], args: str = "forked",
             adopt: Callable[[int], None] | None = None) -> ForkedProcess:
        """A new process from the server; ``adopt(pid)`` runs (under this client's lock) as soon as it is ours."""
        message = json.dumps({**request, "kind": kind}).encode()
        if len(message) > MAX_MESSAGE:
            raise ForkServerError("fork request too large")
        with self._lock:
            if self.broken:
                raise ForkServerError(self.broken)
            try:
                self.sock.settimeout(REPLY_TIMEOUT)
                socket.send_fds(self.sock, [message], list(fds))
                answer = self.sock.recv(4096)
                reply = json.loads(answer)
            except (OSError, ValueError) as exc:  # gone, stuck or garbled: never ask it again
                self.broken = f"the fork server failed ({type(exc).__name__}: {exc or 'no answer'})"
                self.sock.close()
                raise ForkServerError(self.broken) from None
            if "pid" not in reply:
                raise ForkServerError(str(reply.get("error", reply)))
            proc = ForkedProcess(int(reply["pid"]), args)
            if adopt is not None:
                adopt(proc.pid)
            return proc

    def close(self, timeout: float = 10) -> None:
        """Stop the server (it exits when its socket closes) and reap it."""
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.server.kill() if hasattr(self.server, "kill") else os.kill(self.server.pid, signal.SIGKILL)
            self.server.wait()


def start_class_server(threads: int, modules: Sequence[str] = ()) -> Client:
    """Start the class run's server (a fresh interpreter, scrubbed environment) and wait until it has
    imported ``modules`` (``preload``)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {k: os.environ[k] for k in SERVER_ENV_KEYS if k in os.environ}
    env.update(FIXED_ENV)
    env.update({k: str(max(1, threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    proc = subprocess.Popen([sys.executable, "-I", "-B", "-m", "vlm_course.grading.forkserver", str(theirs.fileno()),
                             json.dumps(list(modules))],
                            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
    theirs.close()
    ready = ours.recv(64)
    if ready != b"ready":
        proc.kill()
        proc.wait()
        raise ForkServerError("the fork server did not start")
    from vlm_course.grading import sandbox

    sandbox.SERVER_PIDS.add(proc.pid)
    return Client(ours, proc)


def start_worker_server(handler: Callable[[dict, list[int]], int]) -> Client:
    """Fork this process into a worker server (it must hold nothing secret yet); returns its client.

    The server is a child of this process; it serves ``handler`` for kind ``worker``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            from vlm_course.grading import sandbox

            sandbox._die_with_parent()
            ours.detach()
            close_fds_except([theirs.fileno()])
            serve(theirs, {"worker": handler})
        except BaseException:  # noqa: BLE001 - a server never returns into its parent's code
            code = 70
        finally:
            os._exit(code)
    theirs.close()
    from vlm_course.grading import sandbox

    sandbox.SERVER_PIDS.add(pid)
    return Client(ours, ForkedProcess(pid, "worker server"))


def main(argv: list[str] | None = None) -> int:
    """The class server: preload, say "ready", serve trusted test processes."""
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle; it closes our socket
    from vlm_course.grading import sandbox

    sandbox._die_with_parent()
    preload(json.loads(argv[1]) if len(argv) > 1 else ())
    try:  # what every test process would otherwise find out again (a probe and an interpreter each)
        sandbox.namespace_support()
        sandbox._python_paths()
    except Exception:  # noqa: BLE001 - each process then finds out itself
        pass
    from vlm_course.grading import trusted

    sock.sendall(b"ready")
    serve(sock, {"trusted": trusted.run_forked})
    return 0


if __name__ == "__main__":
    sys.exit(main())
