"""Grade one submission: copy its allowed files, run the tests in a trusted pytest process, collect points.

The trusted process (``python -m pytest -p vlm_course.grading.plugin``) never imports the learner's
files: the exercise fixtures hand it proxies whose calls run in sandboxed workers (``remote``).
Its report (written by the plugin) and the runner's own checks become the results record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from vlm_course import exercise_tests
from vlm_course.grading import GRADER_VERSION, forkserver, report, sandbox, scratch
from vlm_course.grading.remote import GRADING_ENV, OutputBuffer, SessionConfig
from vlm_course.grading.report import printable

ALLOWED_FILES = ("image_search.py", "chatbot.py")
MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 5000
IGNORED = {"__MACOSX", ".DS_Store", "__pycache__", ".ipynb_checkpoints"}
DEFAULT_TESTS = exercise_tests.folder()


@dataclass
class GradeOptions:
    """How to grade (the same for every submission of a run)."""

    tests_dir: Path = DEFAULT_TESTS
    out_dir: Path = Path("grades")
    only: tuple[str, ...] = ()  # test groups (file stems without test_), empty: all
    timeout: float = 1200.0  # wall-clock seconds per submission
    call_timeout: float = 300.0  # seconds per call into the learner's code
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    mode: str = "auto"
    force: bool = False
    visibility: str = "visible"
    withhold: bool = False  # hidden tests: learners see no assertion messages (docs/grading.md)
    max_restarts: int = 2
    hidden: list[Path] = field(default_factory=list)  # extra folders the worker must not see
    scratch_mb: int = 1024  # the submission's scratch tmpfs (worker folders and pytest's tmp_path)
    start: str = "fork"  # fork: processes forked from fork servers that imported torch once (forkserver); spawn: fresh ones


@dataclass
class Submission:
    """A submission as read from its folder or zip: only the allowed files, and what was refused."""

    source: Path
    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(f"file {name} {hashlib.sha256(self.files[name]).hexdigest()}\n".encode())
        for name in sorted(self.refused):
            h.update(f"refused {name}\n".encode())
        if self.error:
            h.update(f"error {self.error}\n".encode())
        return h.hexdigest()


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "submission"
    return name[:100]


def submission_name(source: Path) -> str:
    return safe_name(source.name[:-4] if source.name.lower().endswith(".zip") else source.name)


def _common_folder(paths: list[str]) -> str:
    """The one top folder every path lies in (zips often hold ``alice/image_search.py``), else ''."""
    prefix = ""
    while True:
        tops = {p[len(prefix):].split("/", 1)[0] for p in paths}
        if any(p[len(prefix):].split("/", 1)[0] in ALLOWED_FILES for p in paths) or len(tops) != 1:
            return prefix
        top = next(iter(tops))
        if not all("/" in p[len(prefix):] for p in paths) or prefix.count("/") >= 3:
            return prefix
        prefix += top + "/"


class BadFile(ValueError):
    """An exercise file in the submission cannot be read (the whole submission is then an error)."""


def read_submission(source: Path, name: str | None = None) -> Submission:
    """Read ``source`` (a folder or a .zip): keep only the allowed files, list everything else as refused.

    Never raises: whatever is wrong with the folder or archive ends in ``Submission.error``."""
    sub = Submission(source=source, name=name or submission_name(source))
    try:
        _read_into(sub, source)
    except BadFile as exc:
        sub.error = printable(f"cannot grade {source.name}: {exc}")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        sub.error = printable(f"cannot read the submission {source}: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. zipfile's NotImplementedError, zlib.error, EOFError
        sub.error = printable(f"cannot read the submission {source}: {type(exc).__name__}: {exc}")
    sub.refused = [printable(r) for r in sub.refused]
    return sub


def _read_into(sub: Submission, source: Path) -> None:
    entries: dict[str, object] = {}  # relative path -> Path / ZipInfo
    if source.is_dir() and not source.is_symlink():
        for dirpath, dirnames, filenames in os.walk(source):  # symbolic links are listed, never followed
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = [d for d in dirnames if d not in IGNORED and d not in links]
            rel_dir = os.path.relpath(dirpath, source)
            for fn in [f for f in filenames if f not in IGNORED] + links:
                rel = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                entries[rel.replace(os.sep, "/")] = Path(dirpath) / fn
                if len(entries) > MAX_ENTRIES:
                    raise ValueError(f"more than {MAX_ENTRIES} files")
        prefix = _common_folder(list(entries))
        for rel, path in entries.items():
            _take(sub, rel, prefix, lambda path=path: _read_file(path))
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise ValueError(f"more than {MAX_ENTRIES} files")
            for info in infos:
                if not info.is_dir() and not any(part in IGNORED for part in info.filename.split("/")):
                    entries[info.filename] = info
            prefix = _common_folder(list(entries))
            for rel, info in entries.items():
                _take(sub, rel, prefix, lambda info=info: _read_zip_member(zf, info))
    elif source.exists():
        raise ValueError("not a folder or a .zip file")
    else:
        raise ValueError("no such file or folder")


def _take(sub: Submission, rel: str, prefix: str, read) -> None:
    inner = rel[len(prefix):] if rel.startswith(prefix) else rel
    if inner in ALLOWED_FILES and rel.startswith(prefix):
        try:
            sub.files[inner] = read()
            return
        except BadFile as exc:
            raise BadFile(f"{rel} {exc}") from None
        except ValueError as exc:
            sub.refused.append(f"{rel} ({exc})")
            return
    sub.refused.append(rel)


def _read_file(path: Path) -> bytes:
    st = os.lstat(path)
    if not os.path.isfile(path) or os.path.islink(path):
        raise ValueError("not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError as exc:
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from None


ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma"}


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise ValueError("a symbolic link")
    if info.flag_bits & 0x1:
        raise BadFile("is encrypted (password-protected): make the zip again without a password")
    if info.compress_type not in ZIP_METHODS:
        raise BadFile(f"uses compression method {info.compress_type}, which the grader cannot read: "
                      "make the zip again with ordinary (deflate) compression")
    try:
        with zf.open(info) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - zlib.error, EOFError, BadZipFile, lzma errors, CRC mismatch...
        raise BadFile(f"is damaged in the zip ({type(exc).__name__}: {exc}): make the zip again") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    return data


# ---- tests -----------------------------------------------------------------------------------------


def test_files(options: GradeOptions) -> list[Path]:
    """The test files to run: ``test_*.py`` in the tests folder, restricted to ``options.only``."""
    folder = options.tests_dir
    files = sorted(p for p in folder.glob("test_*.py") if p.is_file())
    if options.only:
        files = [p for p in files if p.stem.removeprefix("test_") in options.only]
    return files


def tests_sha256(options: GradeOptions) -> str:
    """A digest of the tests folder (every file but caches) and of the selection."""
    h = hashlib.sha256()
    root = options.tests_dir
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(p in ("__pycache__", ".pytest_cache") for p in path.relative_to(root).parts):
            h.update(f"{path.relative_to(root).as_posix()} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    h.update(f"only {','.join(sorted(options.only))}\n".encode())
    return h.hexdigest()


def _private(tests_dir: Path) -> list[Path]:
    """``[tests_dir]`` to hide from the worker, or ``[]`` for the course's public tests: they ship inside
    the package, which the worker must read to run at all."""
    return [] if Path(tests_dir).resolve() == DEFAULT_TESTS else [Path(tests_dir)]


# ---- grading one submission ----------------------------------------------------------------------------


def previous_result(path: Path, sub_sha: str, tests_sha: str) -> dict | None:
    """The saved results if they came from the same submission, tests and grader, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        extra = data["extra_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = (extra.get("submission_sha256") == sub_sha and extra.get("tests_sha256") == tests_sha
            and extra.get("grader_version") == GRADER_VERSION and extra.get("complete") is True)
    return data if same else None


def grade(source: Path, options: GradeOptions, name: str | None = None, slot: int = 0,
          tests_digest: str | None = None) -> dict:
    """Grade one submission and write ``<out>/<name>/results.json``; returns the results (never raises)."""
    started = time.time()
    sub = read_submission(Path(source), name)
    meta = {"name": sub.name, "source": printable(os.fsdecode(source)), "submission_sha256": sub.sha256,
            "tests_sha256": tests_digest, "grader_version": GRADER_VERSION, "files": sorted(sub.files),
            "refused": sub.refused}
    try:
        meta["tests_sha256"] = tests_sha = tests_digest or tests_sha256(options)
        target = options.out_dir / sub.name / "results.json"
        if not options.force:
            old = previous_result(target, sub.sha256, tests_sha)
            if old is not None:
                old.setdefault("extra_data", {})["skipped"] = True
                return old
        if sub.error:
            results = report.error_results(meta, sub.error, time.time() - started, options.visibility)
        else:
            with sandbox.uid_block(preferred=slot) as uid_base:
                data, log = _run_tests(sub, options, uid_base)
            results = report.build_results(meta, data, log, options, time.time() - started)
    except Exception as exc:  # noqa: BLE001 - a results file is written whatever happens
        results = report.error_results(meta, printable(f"the grader failed: {type(exc).__name__}: {exc}"),
                                       time.time() - started, options.visibility)
    try:
        report.write_json_atomic(options.out_dir / sub.name / "results.json", results)
    except Exception as exc:  # noqa: BLE001 - e.g. the output folder is full: the gradebook still lists it
        results["extra_data"].setdefault("details", []).append(printable(f"results.json could not be written: {exc}"))
        results["extra_data"]["status"] = "error"
    return results


PYTEST_OK = (0, 1)  # pytest's exit codes for "all passed" and "some tests failed"
LOG_TAIL = 64 * 1024  # bytes of the test process's own output kept (the rest is counted and dropped)
MAX_REPORT = 32 * 1024 * 1024


def _run_tests(sub: Submission, options: GradeOptions, uid_base: int) -> tuple[dict | None, str]:
    files = test_files(options)
    if not files:
        raise ValueError(f"no test_*.py files{' for ' + ', '.join(options.only) if options.only else ''} in {options.tests_dir}")
    mode = sandbox.resolve_mode(options.mode)
    root = Path(tempfile.mkdtemp(prefix=f"vlm-grade-{sub.name[:30]}-"))  # the trusted side's: src/, report.json...
    try:
        if mode == "process":  # a worker dropped to the sandbox uid must reach its folder in scratch/
            os.chmod(root, 0o711)
        source = scratch.new_dir(root, "src")
        for fname, data in sub.files.items():
            scratch.write_file(source, fname, data)
        work = scratch.new_dir(root, "scratch", mode=0o755)  # namespace mode: a tmpfs is mounted here
        report_path = root / "report.json"
        deadline = time.time() + options.timeout
        config = SessionConfig(
            source_dir=str(source), scratch=str(work), shared_dirs=[str(work / "shared")],
            hidden=[str(p) for p in [*_private(options.tests_dir), options.out_dir, sub.source, *options.hidden]],
            uid_base=uid_base, mode=mode, limits=options.limits.as_dict(),
            call_timeout=options.call_timeout, deadline=deadline, max_restarts=options.max_restarts,
            report=str(report_path), scratch_mb=options.scratch_mb,
            # forked only under a class server (the CLI's): a spawned test process may hold secrets of the
            # grader's environment, which no worker may inherit
            start="fork" if options.start == "fork" and _CLASS_SERVER is not None else "spawn",
            preload=forkserver.imports_of(files),
        )
        config_path = root / "session.json"
        config.write(config_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VLM_COURSE_SUBMISSION", GRADING_ENV))}
        env.update({"HF_HUB_OFFLINE": "1", "VLM_COURSE_PROFILE": "toy", "TOKENIZERS_PARALLELISM": "false",
                    "OMP_NUM_THREADS": str(options.limits.threads), "PYTHONDONTWRITEBYTECODE": "1"})
        args = [str(config_path), *map(str, files),
                "-p", "vlm_course.grading.plugin", "-p", "no:cacheprovider", "-p", "no:nbval",
                f"--basetemp={work / 'shared' / 'pytest'}", "-q", "-rN", "--no-header", "--color=no", "--tb=short"]
        log_r, log_w = os.pipe()
        try:
            proc = None
            server = _CLASS_SERVER if config.start == "fork" else None
            if server is not None:  # forked from the class run's server, which imported torch once
                env_file = root / "env.json"
                scratch.write_file(root, env_file.name, json.dumps(env).encode())  # root's folder, mode 0600
                request = {"cwd": str(root), "argv": args, "env_file": str(env_file),
                           "unshare": sandbox.CLONE_NEWNS if mode == "namespace" else 0}
                try:
                    with _LOCK:  # adopted by this process: in ACTIVE before anyone reaps orphans
                        proc = server.fork("trusted", request, [log_w], args="trusted test process", adopt=ACTIVE.add)
                except forkserver.ForkServerError:  # the server died (e.g. the OOM killer): start this one afresh
                    config.start = "spawn"
                    config.write(config_path)
            if proc is None:
                cmd = [sys.executable, "-m", "vlm_course.grading.trusted", *args]
                if mode == "namespace":  # its own mount namespace, where the scratch tmpfs lives and dies
                    cmd = [sandbox.tool("unshare"), "--mount", "--propagation", "private", "--", *cmd]
                proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log_w, stderr=log_w,
                                        start_new_session=True)
                with _LOCK:
                    ACTIVE.add(proc.pid)
        finally:
            os.close(log_w)
        log = OutputBuffer(log_r, LOG_TAIL, tail=True)
        stopped = None
        try:
            proc.wait(timeout=options.timeout + 60)
        except subprocess.TimeoutExpired:
            stopped = f"the test process was stopped after {options.timeout + 60:.0f} s (the --timeout of the submission)"
        finally:
            if proc.poll() is None:
                sandbox.kill_tree(proc.pid)
            proc.wait()
            with _LOCK:
                ACTIVE.discard(proc.pid)
                sandbox.reap_orphans(set(ACTIVE))
        log.thread.join(timeout=10)
        data = _read_report(report_path)
        if data is not None and stopped is None and (proc.returncode not in PYTEST_OK or not data.get("finished")):
            stopped = f"the test process ended abnormally (exit status {proc.returncode}) before finishing its tests"
        if data is not None and stopped:
            data["stopped"] = stopped
        return data, log.text()
    finally:
        scratch.remove_tree(root)


ACTIVE: set[int] = set()  # pids of the test processes running now
_LOCK = threading.Lock()
_CLASS_SERVER: forkserver.Client | None = None


@contextlib.contextmanager
def class_server(options: GradeOptions):
    """The class run's fork server (``forkserver``) while the block runs, when ``options.start`` is
    ``fork``; where it cannot start, the processes are spawned (a note on stderr says so)."""
    global _CLASS_SERVER
    if options.start != "fork" or not forkserver.supported():
        yield None
        return
    try:
        _CLASS_SERVER = forkserver.start_class_server(options.limits.threads, forkserver.imports_of(test_files(options)))
    except (OSError, forkserver.ForkServerError) as exc:
        print(f"vlm-course grade: no fork server ({exc}); every process imports torch itself (slower)", file=sys.stderr)
        options.start = "spawn"
        yield None
        return
    try:
        yield _CLASS_SERVER
    finally:
        server, _CLASS_SERVER = _CLASS_SERVER, None
        server.close()


def stop_all() -> None:
    """Kill every running test process with its workers (after Ctrl-C)."""
    with _LOCK:
        for pid in list(ACTIVE):
            sandbox.kill_tree(pid)


def _read_report(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_REPORT + 1)
        if len(raw) > MAX_REPORT:
            return None
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
