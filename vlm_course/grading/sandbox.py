"""Start a grading worker in a sandbox, and kill it with everything it started.

Two ways, chosen by ``mode``:

``namespace`` (root with ``unshare`` and ``setpriv``, e.g. Linux CI): new network, mount, IPC and
PID namespaces. Inside, a root ``sh`` (started by absolute path, with a fixed PATH) makes every
mount of the machine read-only, covers the folders the worker must not see (the repository, the
tests, the output, the submissions, ``/tmp``, home folders...) with empty tmpfs mounts, binds back
read-only only what Python needs (the interpreter, site-packages, the ``vlm_course`` package) and
read-write only the worker's own folder and the shared test folder (both in the submission's
scratch tmpfs, see ``scratch``), then starts the worker as an unprivileged uid with no
capabilities (``setpriv``) and waits for it. That ``sh`` is PID 1 of the namespace: when the worker
ends or the grader kills it, every process the worker left behind dies with it, and its private
``/tmp``, ``/dev/shm`` and System V IPC objects go with the namespaces.

``process`` (the fallback: no root, no ``unshare``, macOS): a plain child process in its own
session with the same resource limits; the grader becomes a child subreaper so that daemons the
worker detaches are found and killed. It does not hide files or block the network (``process_lacks``
says everything it lacks).

``auto`` picks ``namespace`` where it works, else ``process``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import vlm_course
from vlm_course.grading import scratch

MODES = ("auto", "namespace", "process")
PROCESS_LACKS = (  # what the process sandbox lacks whoever runs it (process_lacks adds the user's part)
    "network isolation (the code can connect anywhere)",
    "hidden files (the code can read the hidden tests, solutions/ and other submissions)",
    "a read-only host (the code can write wherever the worker's user can, the output folder included)",
    "a nosymfollow scratch tmpfs (links the code plants in tmp_path are followed by your tests) and a disk quota",
    "an IPC namespace (System V shared memory and queues are shared with the machine)",
)
TRUSTED_BIN = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")  # where the grader's own tools come from (never $PATH)
SCRIPT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGE_DIR = Path(vlm_course.__file__).resolve().parent
# the course checkout around an editable install (solutions/ lies there); None for an installed package,
# whose parent is site-packages
REPO_DIR = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None
BASE_UID = 61000  # sandbox uids: a block of UID_BLOCK uids per parallel job, from BASE_UID on (uid_block)
UID_BLOCK = 16
UID_BLOCKS = 64  # parallel jobs on one machine, all grading runs together
PR_SET_CHILD_SUBREAPER = 36
# never covered, even when a submission or the output lies right inside one of them
SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys", "/dev", "/var", "/opt", "/run", "/mnt"}
PR_SET_PDEATHSIG = 1


class SandboxUnavailable(RuntimeError):
    """The requested sandbox mode cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker process (and, for processes, of its uid)."""

    cpu_s: int = 1200
    memory_mb: int = 4096
    nproc: int = 64
    fsize_mb: int = 64
    output_kb: int = 64
    threads: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SandboxSpec:
    """Where and as whom one worker runs."""

    work_dir: Path  # the worker's current folder (read-write): the submission's allowed files
    shared_dirs: list[Path] = field(default_factory=list)  # read-write, same path on both sides
    hidden: list[Path] = field(default_factory=list)  # also hide these (tests, output, submissions)
    uid: int = BASE_UID
    mode: str = "auto"
    limits: Limits = field(default_factory=Limits)


# ---- sandbox uids, one block per parallel job on the machine ---------------------------------------


def lock_dir_path() -> str:
    """Where the uid-block locks live: root's own folder under /run (never the world-writable /run/lock
    or /tmp), the user's runtime folder otherwise."""
    if os.geteuid() == 0:
        return "/run/vlm-course-grade"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache"), "vlm-course-grade")


def _lock_dir() -> int:
    """A directory fd of ``lock_dir_path()``, opened without following links and refused unless it is the
    caller's, mode 0700."""
    path = lock_dir_path()
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SandboxUnavailable(f"{path} is not a plain folder ({exc.strerror}): remove it and grade again") from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise SandboxUnavailable(f"{path} must belong to you with mode 0700 (owner uid {st.st_uid}, mode "
                                 f"{stat.S_IMODE(st.st_mode):o}): remove it and grade again")
    return fd


@contextlib.contextmanager
def uid_block(preferred: int = 0) -> Iterator[int]:
    """The first uid of a block of ``UID_BLOCK`` sandbox uids that no other job on this machine holds, for
    as long as the ``with`` lasts: two class runs (or test runs) at once never hand one uid to two
    students, who could otherwise signal, trace or share files with each other. Each block is an
    ``flock`` on its own file, so a crashed grader frees its block with its last fd. ``preferred``
    (the job's slot) is tried first; when every block is taken this waits for it."""
    dir_fd = _lock_dir()
    try:
        order = [preferred % UID_BLOCKS] + [k for k in range(UID_BLOCKS) if k != preferred % UID_BLOCKS]
        for blocking in (False, True):
            for k in order[: 1 if blocking else None]:
                fd = os.open(f"uids-{BASE_UID + UID_BLOCK * k}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield BASE_UID + UID_BLOCK * k
                finally:
                    os.close(fd)
                return
    finally:
        os.close(dir_fd)


# ---- what this machine allows ---------------------------------------------------------------------


def tool(name: str) -> str | None:
    """The absolute path of a system tool the root side runs: only from TRUSTED_BIN, owned by root and
    writable by nobody else (``$PATH`` and ``/usr/local/bin`` are never consulted)."""
    for folder in TRUSTED_BIN:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and st.st_uid == 0 and not st.st_mode & 0o022:
            return path
    return None


@functools.cache
def namespace_support() -> tuple[bool, str]:
    """(True, "") where namespaces work here, else (False, why not)."""
    if not sys.platform.startswith("linux"):
        return False, f"namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, "namespaces need root (the grader runs as an unprivileged user)"
    for name in ("unshare", "setpriv", "sh", "mount", "umount", "mkdir", "cp", "chmod"):
        if tool(name) is None:
            return False, f"{name} is not installed in {', '.join(TRUSTED_BIN)} (owned by root)"
    if not scratch.nosymfollow_supported():
        return False, f"the kernel ({os.uname().release}) lacks nosymfollow mounts (Linux 5.10+)"
    try:
        probe = subprocess.run(
            [tool("unshare"), "--net", "--mount", "--ipc", "--pid", "--fork", "--kill-child", "--mount-proc", tool("sh"), "-c",
             f"{tool('mount')} -t tmpfs -o size=4k,nosymfollow vlm-probe /mnt 2>/dev/null || "
             f"{tool('mount')} -t tmpfs -o size=4k,nosymfollow vlm-probe /tmp"],
            capture_output=True, timeout=30, env={"PATH": SCRIPT_PATH},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed: {exc}"
    if probe.returncode != 0:
        return False, f"unshare failed: {probe.stderr.decode(errors='replace').strip()[:200]}"
    return True, ""


def resolve_mode(mode: str) -> str:
    """``namespace`` or ``process`` for the requested ``mode`` (SandboxUnavailable if it cannot run)."""
    if mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "process":
        return mode
    ok, why = namespace_support()
    if ok:
        return "namespace"
    if mode == "namespace":
        raise SandboxUnavailable(f"the namespace sandbox cannot run here: {why}. Use --sandbox process (weaker).")
    return "process"


def process_drop_uid() -> bool:
    """Process mode: whether the worker runs as a sandbox uid (the grader is root and other users can
    read the Python installation), instead of as the grader's own user."""
    return os.geteuid() == 0 and _reachable_by_others(_real(sys.executable))


def process_lacks() -> list[str]:
    """The protections the process sandbox lacks on this machine, in words (printed by the grader,
    listed in each results.json as ``sandbox.lacks``; docs/grading.md section 4)."""
    lacks = list(PROCESS_LACKS)
    if os.geteuid() != 0:
        lacks.append("a user of its own (the code runs as your user: it can read the grader's environment with "
                     "its tokens in /proc, signal the grader, and --nproc also counts your own processes)")
    elif not process_drop_uid():
        lacks.append("a user of its own (the code runs as root, because other users cannot read the Python "
                     "installation: it can do anything root can, and Linux does not enforce --nproc for root, "
                     "so a fork bomb is stopped only by the time limits)")
    return lacks


def worker_command(config: dict) -> list[str]:
    """The worker's argv: this interpreter in isolated mode, no bytecode written."""
    return [sys.executable, "-I", "-B", "-m", "vlm_course.grading.worker", json.dumps(config)]


def worker_env(spec: SandboxSpec, mode: str) -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (no tokens, no proxies), offline, toy profile."""
    work = str(spec.work_dir)
    tmp = "/tmp" if mode == "namespace" else str(spec.work_dir / ".tmp")
    threads = str(max(1, spec.limits.threads))
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(spec.work_dir / ".cache" / "huggingface"),
        "XDG_CACHE_HOME": str(spec.work_dir / ".cache"),
        "MPLCONFIGDIR": str(spec.work_dir / ".cache" / "matplotlib"),
        "TORCH_HOME": str(spec.work_dir / ".cache" / "torch"),
        "VLM_COURSE_PROFILE": "toy",
        "VLM_COURSE_DEVICE": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "TQDM_DISABLE": "1",
    }


# ---- the mount plan (namespace mode) --------------------------------------------------------------


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(p))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: Iterable[Path]) -> list[Path]:
    unique = sorted(set(paths), key=lambda p: (len(p.parts), str(p)))
    out: list[Path] = []
    for p in unique:
        if not any(_under(p, q) for q in out):
            out.append(p)
    return out


def _closed_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` that other users cannot enter (like ``/root``, mode 0700)."""
    out = []
    for parent in reversed(path.parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            out.append(parent)
    return out


@functools.cache
def _python_paths() -> tuple[Path, ...]:
    """Folders the worker's interpreter needs: prefixes and its clean sys.path (no current folder)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    try:
        out = subprocess.run([sys.executable, "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                             capture_output=True, text=True, timeout=60, env={"PATH": os.environ.get("PATH", "")})
        paths.update(p for p in json.loads(out.stdout.strip().splitlines()[-1]) if p.startswith("/"))
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        paths.update(p for p in sys.path if p.startswith("/") and "site-packages" in p)
    found = []
    for p in paths:
        real = _real(p)
        while not real.exists() and real != real.parent:  # python311.zip may be absent
            real = real.parent
        if real.is_file():
            real = real.parent
        found.append(real)
    return tuple(found)


@dataclass
class MountPlan:
    stage: Path
    hide: list[tuple[Path, str]]  # (path, tmpfs mode)
    keep: list[tuple[Path, bool]]  # (path, writable)
    hide_inside_keep: list[tuple[Path, str]]
    copies: list[Path] = field(default_factory=list)  # kept files others may not read: shown as readable copies


def _unreadable_files(root: Path) -> list[Path]:
    """Files under ``root`` that the sandbox uid could not read (e.g. a checkpoint saved with mode 0600)."""
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH and "__pycache__" not in p.parts:
                out.append(p)
    return out


def mount_plan(spec: SandboxSpec) -> MountPlan:
    """Which folders to cover and which to bring back for ``spec`` (namespace mode)."""
    sensitive = [_real(p) for p in spec.hidden] + ([REPO_DIR] if REPO_DIR else [])
    python = list(_python_paths())
    hide: dict[Path, str] = {}
    for p in ("/tmp", "/var/tmp", "/dev/shm"):
        if Path(p).is_dir():
            hide[_real(p)] = "1777"
    if Path("/dev/mqueue").is_dir():  # the host's POSIX queues (the worker's own live in its IPC namespace)
        hide[Path("/dev/mqueue")] = "755"
    for p in ["/root", "/home", *sensitive]:
        if Path(p).exists():
            hide.setdefault(_real(p), "755")
    for p in python:
        for closed in _closed_ancestors(p):
            hide.setdefault(closed, "755")
    hide = {(p if p.is_dir() else p.parent): m for p, m in hide.items()}
    hide = {p: m for p, m in hide.items() if str(p) not in SYSTEM_DIRS}
    keep_ro = [p for p in [*python, PACKAGE_DIR] if not any(_under(s, p) for s in sensitive if s != REPO_DIR)]
    keep_rw = [_real(spec.work_dir), *(_real(p) for p in spec.shared_dirs)]
    keep: list[tuple[Path, bool]] = []
    for p in _outermost([*keep_ro, *keep_rw]):
        if any(_under(p, h) for h in hide):
            keep.append((p, p in keep_rw))
    outer_hide = _outermost(hide)
    top = [(p, hide[p]) for p in outer_hide if not any(_under(p, k) and p != k for k, _ in keep)]
    inner = [(p, hide[p]) for p in outer_hide if any(_under(p, k) and p != k for k, _ in keep)]
    # hides nested in other hides are covered already, except where a keep brings their parent back
    for p in hide:
        if p not in outer_hide and any(_under(p, k) and p != k for k, _ in keep):
            inner.append((p, hide[p]))
    copies = _unreadable_files(PACKAGE_DIR) if any(_under(PACKAGE_DIR, k) for k, _ in keep) else []
    return MountPlan(stage=_stage_dir([*hide, *(k for k, _ in keep)]), hide=top, keep=keep, hide_inside_keep=inner,
                     copies=copies)


def _stage_dir(avoid: Sequence[Path]) -> Path:
    for c in ("/mnt", "/media", "/srv", "/run", "/opt", "/var/lib"):
        p = Path(c)
        if p.is_dir() and not p.is_symlink() and not any(_under(a, p) or _under(p, a) for a in avoid):
            return p
    raise SandboxUnavailable("no free folder to stage mounts in (tried /mnt, /media, /srv, /run, /opt, /var/lib)")


def host_mounts() -> list[tuple[str, str]]:
    """(mount point, per-mount flags to keep) of this mount namespace, outside /proc, /sys and /dev."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return [("/", "")]
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if any(point == p or point.startswith(p + "/") for p in ("/proc", "/sys", "/dev")):
            continue
        keep = [o for o in fields[5].split(",") if o in ("nosuid", "nodev", "noexec")]
        out.append((point, ",".join(keep)))
    return out or [("/", "")]


def setup_script(plan: MountPlan, spec: SandboxSpec) -> str:
    """The root shell script run as PID 1 inside the namespaces; its arguments are the worker's argv.

    Every tool is called by its absolute path (``tool``); every mount of the machine becomes
    read-only before anything is brought back, so the worker can write only to its own folder,
    the shared test folder and its private ``/tmp``, ``/var/tmp`` and ``/dev/shm``."""
    q = shlex.quote
    setpriv = q(tool("setpriv") or "setpriv")
    return mount_script(plan, spec) + "\n".join([
        f"cd {q(str(spec.work_dir))}",
        # the worker as an unprivileged uid without capabilities; this root shell stays PID 1 and waits
        f"{setpriv} --reuid={spec.uid} --regid={spec.uid} --clear-groups --no-new-privs --inh-caps=-all "
        '--bounding-set=-all -- "$@" </dev/null &',
        "wait $!",
    ]) + "\n"


def mount_script(plan: MountPlan, spec: SandboxSpec, proc: bool = False) -> str:
    """The mounts of ``setup_script`` (run as root inside the new namespaces): the host read-only, the
    hidden folders covered, what the worker needs brought back. ``proc``: mount this PID namespace's
    ``/proc`` first (``unshare --mount-proc`` does it on the spawn path)."""
    q = shlex.quote
    mkdir, cp, chmod = (q(tool(n) or n) for n in ("mkdir", "cp", "chmod"))
    # -n: no record in /run/mount/utab (read-only by then; nothing outside this namespace needs it)
    mount, umount = (f"{q(tool(n) or n)} -n" for n in ("mount", "umount"))
    fsize = max(1, spec.limits.fsize_mb)
    copy_mb = 1 + sum(p.stat().st_size for p in plan.copies) // (1024 * 1024)
    lines = ["set -e", f"PATH={SCRIPT_PATH}", "export PATH", "umask 022", f"{mount} --make-rprivate /"]
    if proc:
        lines.append(f"{mount} -t proc -o nosuid,nodev,noexec proc /proc")
    for point, flags in host_mounts():  # the host read-only, keeping nosuid/nodev/noexec where they were
        opts = ",".join(x for x in ("remount,bind,ro", flags) if x)
        lines.append(f"if [ -d {q(point)} ]; then {mount} -o {opts} {q(point)}; fi")
    lines.append(f"{mount} -t tmpfs -o size={copy_mb + 1}m,mode=700 vlm-stage {q(str(plan.stage))}")
    for i, path in enumerate(plan.copies):  # readable copies of files only root may read
        lines += [f"{cp} {q(str(path))} {q(f'{plan.stage}/copy{i}')}", f"{chmod} 644 {q(f'{plan.stage}/copy{i}')}"]
    for i, (path, writable) in enumerate(plan.keep):
        dest = f"{plan.stage}/{i}"
        opts = "remount,bind,nosuid,nodev," + ("rw" if writable else "ro")
        lines += [f"{mkdir} {q(dest)}", f"{mount} --bind {q(str(path))} {q(dest)}", f"{mount} -o {opts} {q(dest)}"]
    for path, mode in plan.hide:
        size = f"{fsize}m" if mode == "1777" else "1m"
        lines.append(f"{mount} -t tmpfs -o size={size},mode={mode},nosuid,nodev vlm-hide {q(str(path))}")
    for i, (path, _) in enumerate(plan.keep):
        lines += [f"{mkdir} -p {q(str(path))}", f"{mount} --move {q(f'{plan.stage}/{i}')} {q(str(path))}"]
    for path, mode in plan.hide_inside_keep:
        lines.append(f"if [ -d {q(str(path))} ]; then {mount} -t tmpfs -o size=1m,mode={mode} vlm-hide {q(str(path))}; fi")
    for i, path in enumerate(plan.copies):
        lines.append(f"{mount} --bind {q(f'{plan.stage}/copy{i}')} {q(str(path))}")
    lines.append(f"{umount} -l {q(str(plan.stage))}")
    return "\n".join(lines) + "\n"


# ---- launching and killing ---------------------------------------------------------------------------


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def become_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux), so that detached daemons can be found."""
    if not sys.platform.startswith("linux"):
        return False
    global _SUBREAPER
    try:
        _SUBREAPER = _SUBREAPER or ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        pass
    return _SUBREAPER


_SUBREAPER = False
SERVER_PIDS: set[int] = set()  # this process's fork servers (forkserver): children that are no orphans


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _process_preexec(limits: Limits, uid: int | None) -> None:
    _die_with_parent()
    if uid is not None:  # root without namespaces: drop to the sandbox uid so that RLIMIT_NPROC counts
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _reachable_by_others(path: Path) -> bool:
    return not _closed_ancestors(path)


@dataclass
class Launched:
    """A started worker: ``popen`` is the outermost process (``unshare``, the namespace's PID 1 forked
    by a fork server, or the worker itself)."""

    popen: subprocess.Popen
    mode: str
    protections: dict
    forked: bool = False

    def leftovers(self, others: set[int] = frozenset()) -> int:
        """How many processes besides the worker itself it has started and left running (daemons...).

        ``others``: pids of this process's children that are not this worker's (other workers)."""
        try:
            import psutil

            root = psutil.Process(self.popen.pid)
            if self.mode == "namespace":  # unshare -> sh (PID 1 inside) -> the worker, and what it left
                inits = [root] if self.forked else root.children()  # forked: PID 1 -> the worker
                kids = inits[0].children() if inits else []
                if not kids:
                    return 0
                worker = min(kids, key=lambda p: (p.create_time(), p.pid))
                return sum(1 for p in inits[0].children(recursive=True) if p.pid != worker.pid and _running(p))
            count = sum(1 for p in root.children(recursive=True) if _running(p))
            if _SUBREAPER:  # orphans adopted by this process
                count += sum(1 for p in psutil.Process().children() if p.pid != self.popen.pid and p.pid not in others
                             and p.pid not in SERVER_PIDS and _running(p))
            return count
        except Exception:  # noqa: BLE001 - psutil missing or processes gone meanwhile
            return 0

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (its namespace, or its session and orphans)."""
        if self.popen.poll() is not None:  # already ended and reaped: its pid may belong to someone else now
            return
        kill_tree(self.popen.pid)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _running(p) -> bool:
    try:
        import psutil

        return p.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone meanwhile
        return False


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its process group and all its descendants (namespace inits first)."""
    try:
        import psutil

        try:
            root = psutil.Process(pid)
            family = root.children(recursive=True)
        except psutil.Error:
            family = []
        for p in family:  # namespace init first: its death takes the whole namespace along
            try:
                if p.name() == "sh" and p.ppid() and psutil.Process(p.ppid()).name() == "unshare":
                    p.kill()
            except psutil.Error:
                pass
    except ImportError:
        family = []
    for sig_target in ("group", "pid"):
        try:
            if sig_target == "group":
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for p in family:
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


def reap_orphans(keep: set[int]) -> int:
    """Kill children of this process other than ``keep`` (daemons it adopted as a subreaper)."""
    if not _SUBREAPER:  # only a subreaper adopts orphans; otherwise our children are all our own
        return 0
    keep = set(keep) | SERVER_PIDS
    try:
        import psutil
    except ImportError:
        return 0
    killed = 0
    me = psutil.Process()
    for child in me.children():
        if child.pid in keep:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
                continue
            kill_tree(child.pid)
            os.waitpid(child.pid, os.WNOHANG)
            killed += 1
        except (psutil.Error, ChildProcessError, OSError):
            pass
    return killed


def launch(spec: SandboxSpec, config: dict, pass_fds: Sequence[int], stdout: int, server=None) -> Launched:
    """Start the worker (``worker.main(config)``) in the sandbox; its stdout and stderr go to the fd
    ``stdout``. ``pass_fds``: its request and reply pipes (``config`` names them). With ``server`` (a
    ``forkserver.Client``), the worker is forked from it instead of started as a new interpreter."""
    mode = resolve_mode(spec.mode)
    env = worker_env(spec, mode)
    limits = spec.limits
    protections = {
        "mode": mode,
        "limits": limits.as_dict(),
    }
    if server is not None:
        return _launch_forked(spec, mode, env, config, pass_fds, stdout, server, protections)
    argv = worker_command(config)
    if mode == "namespace":
        plan = mount_plan(spec)
        cmd = [tool("unshare"), "--net", "--mount", "--ipc", "--pid", "--fork", "--kill-child", "--mount-proc",
               tool("sh"), "-c", setup_script(plan, spec), "vlm-sandbox", *argv]
        _namespace_protections(protections, spec)
        popen = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stdout,
                                 pass_fds=tuple(pass_fds), start_new_session=True, preexec_fn=_die_with_parent)
    else:
        become_subreaper()
        drop = spec.uid if process_drop_uid() else None
        _process_protections(protections, drop)
        popen = subprocess.Popen(argv, env=env, cwd=spec.work_dir, stdin=subprocess.DEVNULL, stdout=stdout,
                                 stderr=stdout, pass_fds=tuple(pass_fds), start_new_session=True,
                                 preexec_fn=lambda: _process_preexec(limits, drop))
    return Launched(popen=popen, mode=mode, protections=protections)


def _namespace_protections(protections: dict, spec: SandboxSpec) -> None:
    protections.update(network="namespace", filesystem="hidden", host="read-only", uid=spec.uid, pids="namespace",
                       ipc="namespace", scratch="tmpfs, nosymfollow")


def _process_protections(protections: dict, drop: int | None) -> None:
    protections.update(network="none", filesystem="none", lacks=process_lacks(),
                       uid=drop if drop is not None else os.geteuid(),
                       pids="session" + ("" if drop is not None or os.geteuid() != 0 else " (fork limit not enforced for root)"))


# ---- forked workers (forkserver) ---------------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _launch_forked(spec: SandboxSpec, mode: str, env: dict, config: dict, pass_fds: Sequence[int], stdout: int,
                   server, protections: dict) -> Launched:
    """The worker forked from this trusted process's worker server (``forkserver``): in namespace mode
    the server's short-lived middle process enters new network, mount, IPC and PID namespaces and the
    forked process is their PID 1 (``sandboxed_child``); in process mode it is the worker itself."""
    request = {"mode": mode, "env": env, "config": config, "work_dir": str(spec.work_dir)}
    if mode == "namespace":
        request.update(unshare=CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID, uid=spec.uid,
                       script=mount_script(mount_plan(spec), spec, proc=True))
        _namespace_protections(protections, spec)
    else:
        become_subreaper()
        request["uid"] = spec.uid if process_drop_uid() else None
        _process_protections(protections, request["uid"])
    protections["start"] = "forked from a process that imported the libraries before any learner code ran"
    fds = [*pass_fds, stdout]
    popen = server.fork("worker", request, fds, args=f"sandboxed worker ({mode})")
    return Launched(popen=popen, mode=mode, protections=protections, forked=True)


def sandboxed_child(request: dict, fds: list[int]) -> int:
    """Runs in the process a worker server forked (already in the new namespaces in namespace mode):
    returns its exit status. Namespace mode: as PID 1 (root), make the mounts with ``mount_script``,
    fork the worker, wait for it and exit like the spawn path's ``sh`` (128 + the signal that killed
    it), which takes everything the worker left with the namespace. Process mode: become the worker."""
    from vlm_course.grading import forkserver

    req_r, rep_w, out = fds
    os.setsid()
    _die_with_parent()  # the trusted process has adopted us by now
    forkserver.close_fds_except([req_r, rep_w, out])
    forkserver.attach_stdio(out)
    if request["mode"] != "namespace":
        return _become_worker(request, req_r, rep_w)
    done = subprocess.run([tool("sh"), "-c", request["script"]], env={"PATH": SCRIPT_PATH}, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=2, close_fds=True)
    if done.returncode != 0:
        os.write(2, f"the sandbox could not be set up (mount script status {done.returncode})\n".encode())
        return 125
    worker = os.fork()
    if worker == 0:
        code = 70
        try:
            code = _become_worker(request, req_r, rep_w)
        finally:
            os._exit(code)
    for fd in (req_r, rep_w):
        os.close(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    while True:  # PID 1: reap whatever ends, until the worker does
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 70
        if pid == worker:
            return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)


def _become_worker(request: dict, req_r: int, rep_w: int) -> int:
    """Turn this forked process into the worker: its folder, its scrubbed environment, no privileges."""
    import io

    work = request["work_dir"]
    os.chdir(work)
    os.umask(0o022)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = True
    if request.get("uid") is not None:
        drop_privileges(int(request["uid"]))
    for name, fd in (("stdout", 1), ("stderr", 2)):  # unbuffered, as PYTHONUNBUFFERED gives a new interpreter
        setattr(sys, name, io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                            errors="backslashreplace", write_through=True))
    from vlm_course.grading import worker

    return worker.main_forked(dict(request["config"], request_fd=req_r, reply_fd=rep_w))


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (and gid) with no supplementary groups, no capabilities (bounding, inheritable and
    ambient sets emptied too; the bounding set where the process may) and ``no_new_privs``, as
    ``setpriv`` does on the spawn path; checked in ``/proc/self/status`` afterwards (RuntimeError if
    anything is left)."""
    libc = ctypes.CDLL(None, use_errno=True)
    bounding = False
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                last = int(f.read())
        except (OSError, ValueError):
            last = 63
        # a container without CAP_SETPCAP (some hosted autograders) cannot empty the bounding set; with
        # no_new_privs below, an exec can gain nothing from it anyway
        bounding = all(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 for cap in range(last + 1))
        os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise RuntimeError("cannot set no_new_privs")
    # changing the uid made the process undumpable, its /proc/self files root's; a new interpreter (the
    # spawn path's exec) would be dumpable again: the same here (it holds nothing secret by design)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2: all empty
    if libc.capset(header, data) != 0:
        raise RuntimeError("cannot clear the capability sets")
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    caps = [status.get(k, "0").strip() for k in ("CapInh", "CapPrm", "CapEff", "CapAmb") + ("CapBnd",) * bounding]
    ids = status.get("Uid", "").split() + status.get("Gid", "").split()
    if any(int(c, 16) for c in caps) or set(ids) != {str(uid)} or status.get("NoNewPrivs", "").strip() != "1":
        raise RuntimeError(f"privileges left after the drop: {caps} {ids}")
