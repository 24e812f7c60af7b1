"""pytest plugin of the trusted grading process (``pytest -p vlm_course.grading.plugin``).

It keeps only the tests that carry a ``points`` marker, records every test's outcome, points,
failure message and the worker output printed meanwhile, and writes them (atomically, after each
test, so that a killed run still leaves what it did) to the report file the runner named in
``$VLM_COURSE_GRADING_WORKER``. It also supplies the exercise fixtures (``submission``,
``submission_module``, ``image_search_cls``, ``clip_model_name``) for hidden test folders that
bring no conftest.py of their own; a conftest.py defining them takes precedence.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from vlm_course.grading import remote

MAX_TEXT = 4000
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def _cap(text: str, limit: int = MAX_TEXT) -> str:
    """At most ``limit`` characters: the start and, mostly, the end (where the assertion message is)."""
    if len(text) <= limit:
        return text
    head = limit // 5
    return text[:head] + f"\n[... {len(text) - limit} characters cut ...]\n" + text[-(limit - head):]


class Recorder:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.path = Path(remote.session().config.report) if remote.session().config.report else None
        self.tests: dict[str, dict] = {}
        self.collection_errors: list[str] = []
        self.deselected = 0
        self.started = time.time()

    def test(self, nodeid: str) -> dict:
        if nodeid not in self.tests:
            file = nodeid.split("::")[0]
            self.tests[nodeid] = {
                "nodeid": nodeid, "group": Path(file).stem.removeprefix("test_"), "name": nodeid.split("::", 1)[-1],
                "points": 0.0, "phases": {}, "message": "", "public": "", "description": "", "output": "",
                "duration": 0.0,
            }
        return self.tests[nodeid]

    def write(self, finished: bool = False) -> None:
        if self.path is None:
            return
        s = remote.session()
        data = {
            "finished": finished,
            "tests": list(self.tests.values()),
            "collection_errors": self.collection_errors,
            "deselected": self.deselected,
            "events": s.events,
            "protections": s.protections,
            "worker_output": {k: _cap(v) for k, v in s.output_text().items()},
            "duration": time.time() - self.started,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)  # this process's umask is 0
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


@pytest.hookimpl(trylast=True)  # after pytest's tmpdir plugin made config._tmp_path_factory
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points a test is worth when an exercise is graded")
    if remote.grading():
        _STATE["recorder"] = Recorder(config)
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is not None:
            _share_tmp_folders(factory)


def _share_tmp_folders(factory) -> None:
    """pytest makes its temporary folders 0700; the workers (other uids) must write in them too.

    Each folder is opened right after pytest made it, inside the base folder that only this
    process can write, so the mode change cannot be redirected elsewhere."""
    get_base, make = factory.getbasetemp, factory.mktemp

    def chmod(path, mode: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def getbasetemp():
        base = get_base()
        chmod(base, 0o755)
        return base

    def mktemp(basename: str, numbered: bool = True):
        path = make(basename, numbered)
        chmod(path, 0o777)
        return path

    factory.getbasetemp, factory.mktemp = getbasetemp, mktemp


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Each test's own code runs under the trusted side's time limit (``remote.Watchdog``)."""
    if not remote.grading():
        return (yield)
    watchdog = remote.session().watchdog
    watchdog.start()
    try:
        return (yield)
    finally:
        watchdog.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = [i for i in items if i.get_closest_marker("points") is not None]
    dropped = [i for i in items if i.get_closest_marker("points") is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    recorder = _STATE.get("recorder")
    if recorder is not None:
        recorder.deselected = len(dropped)
        for item in keep:
            marker = item.get_closest_marker("points")
            recorder.test(item.nodeid)["points"] = float(marker.args[0]) if marker.args else 1.0
        recorder.write()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _recorder_do(lambda r: r.collection_errors.append(_cap(f"{report.nodeid}: {report.longreprtext}")))


def public_message(exc: BaseException) -> str:
    """What a learner may see of a failure in a hidden test: what their own code raised, or what the
    grader says about the submission, never the test's assertion (it may hold the expected value)."""
    if isinstance(exc, remote.SandboxError) or getattr(exc, "vlm_public", False):
        return _cap(str(exc), 1000)
    if getattr(exc, "vlm_from_submission", False):
        return _cap(f"your code raised {type(exc).__name__}: {exc}", 1000)
    if isinstance(exc, pytest.fail.Exception) and str(exc).startswith("DID NOT RAISE"):
        return "your code did not raise the exception this test expects"
    if isinstance(exc, AssertionError):
        return "a check in this test failed (hidden test: the expected value is not shown)"
    return f"the test stopped with {type(exc).__name__} (hidden test: the details are not shown)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        public = public_message(call.excinfo.value)
        doc = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip().splitlines()

        def record(r: Recorder) -> None:
            t = r.test(item.nodeid)
            t["public"] = (t["public"] + "\n" + public).strip()
            t["description"] = doc[0] if doc else ""

        _recorder_do(record)
    return report


def pytest_runtest_logstart(nodeid: str, location) -> None:
    if remote.grading():
        remote.session().current_test = nodeid
        remote.session().take_output()  # output between tests belongs to no test


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    def record(r: Recorder) -> None:
        t = r.test(report.nodeid)
        t["phases"][report.when] = report.outcome
        t["duration"] += float(report.duration or 0.0)
        if report.failed or report.skipped:
            text = report.longreprtext or ""
            if report.skipped and isinstance(report.longrepr, tuple):
                text = f"skipped: {report.longrepr[2]}"
            t["message"] = _cap((t["message"] + "\n" + text).strip())

    _recorder_do(record)


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    def finish(r: Recorder) -> None:
        out = remote.session().take_output()
        if out:
            t = r.test(nodeid)
            t["output"] = _cap(t["output"] + out, 2000)
        r.write()

    _recorder_do(finish)


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    if not remote.grading():
        return
    s = remote.session()
    s.current_test = None
    s.close()
    _recorder_do(lambda r: r.write(finished=True))


def _recorder_do(fn) -> None:
    recorder = _STATE.get("recorder")
    if recorder is not None:
        fn(recorder)


_STATE: dict = {}


# ---- fixtures for hidden test folders without a conftest.py -------------------------------------------


@pytest.fixture(scope="session")
def submission():
    """The submission under grading (its modules live in sandboxed workers)."""
    if not remote.grading():
        pytest.fail("the grading plugin's submission fixture only works under `vlm-course grade`", pytrace=False)
    return remote.remote_submission()


@pytest.fixture(scope="session")
def submission_module(submission):
    """``submission_module("chatbot")`` -> the submission's ``chatbot.py`` (a remote module)."""
    return submission.load


@pytest.fixture(scope="session")
def image_search_cls(submission):
    """``CLIPImageSearch`` from the submission's ``image_search.py``."""
    return submission.attribute("image_search", "CLIPImageSearch")


@pytest.fixture(scope="session")
def clip_model_name() -> str:
    return DEFAULT_CLIP
