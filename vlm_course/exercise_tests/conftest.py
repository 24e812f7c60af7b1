"""Exercise tests: choose the submission to test and add up the points.

Run against the reference solutions (default), a learner's folder, or any folder holding the
exercise files (``vlm-course check`` is the learner's short way)::

    pytest vlm_course/exercise_tests                          # solutions/
    pytest vlm_course/exercise_tests --submission exercises   # the learner's files
    VLM_COURSE_SUBMISSION=/path/to/dir pytest vlm_course/exercise_tests

Tests never import a submission at module import time: they take it from a fixture
(``image_search_cls``, or ``submission_module("chatbot")`` for other exercises), so an
unfinished file fails its tests one by one instead of breaking collection.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from vlm_course import submission as loader
from vlm_course.exercise_tests.fixtures import (  # noqa: F401 - shared fixtures
    add_submission_option,
    clip_model_name,
    one_torch_thread,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLM_COURSE_PROFILE", "toy")

_POINTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_submission_option(parser)


class Submission:
    """The folder under test; ``load(name)`` imports ``<name>.py`` from it once per test session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._modules: dict[str, object] = {}

    def load(self, module: str):
        if module not in self._modules:
            try:
                self._modules[module] = loader.import_file(loader.module_file(self.folder, module))
            except loader.SubmissionError as exc:
                self._modules[module] = exc
        found = self._modules[module]
        if isinstance(found, Exception):
            pytest.fail(str(found), pytrace=False)
        return found

    def attribute(self, module: str, name: str):
        """``module.name``, or a failure saying the file must define it."""
        mod = self.load(module)
        if not hasattr(mod, name):
            pytest.fail(f"{self.folder / (module + '.py')} must define {name}", pytrace=False)
        return getattr(mod, name)

    def __repr__(self) -> str:
        return f"Submission({self.folder})"


@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config) -> Submission:
    """The submission folder under test (``--submission``, ``$VLM_COURSE_SUBMISSION`` or ``solutions/``)."""
    if os.environ.get("VLM_COURSE_GRADING_WORKER"):  # `vlm-course grade`: the code runs in a sandboxed worker
        from vlm_course.grading.remote import remote_submission

        return remote_submission()
    try:
        option = pytestconfig.getoption("submission", default=None)
    except ValueError:  # option not registered (this conftest was loaded late)
        option = None
    try:
        return Submission(loader.submission_folder(option, pytestconfig.rootpath))
    except loader.SubmissionError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def submission_module(submission: Submission):
    """``submission_module("chatbot")`` -> the imported ``chatbot.py`` of the submission."""
    return submission.load


@pytest.fixture(scope="session")
def image_search_cls(submission: Submission):
    """``CLIPImageSearch`` from the submission's ``image_search.py``: the one way tests reach it."""
    return submission.attribute("image_search", "CLIPImageSearch")


# ---- points -----------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    marker = item.get_closest_marker("points")
    if marker is not None:
        records = item.config.stash.setdefault(_POINTS, [])
        points = float(marker.args[0]) if marker.args else 1.0
        records.append((item.nodeid, report.when, points, report.passed))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    records = config.stash.get(_POINTS, [])
    if not records:
        return
    worth: dict[str, float] = {}
    failed: set[str] = set()
    for nodeid, _when, points, ok in records:
        worth[nodeid] = points
        if not ok:
            failed.add(nodeid)
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for nodeid, points in worth.items():
        key = Path(nodeid.split("::")[0]).stem.removeprefix("test_")
        by_file[key][1] += points
        if nodeid not in failed:
            by_file[key][0] += points
    try:
        option = config.getoption("submission", default=None)
        folder = loader.submission_folder(option, config.rootpath)
    except (ValueError, loader.SubmissionError):
        folder = "?"
    terminalreporter.section("exercise points")
    terminalreporter.write_line(f"submission: {folder}")
    for key, (got, total) in sorted(by_file.items()):
        terminalreporter.write_line(f"{key}: {got:g} / {total:g} points")
