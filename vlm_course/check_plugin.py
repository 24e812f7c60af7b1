"""pytest plugin of ``vlm-course check``: one JSON line per graded test phase, written to ``$VLM_COURSE_CHECK_OUT``.

Loaded as ``pytest -p vlm_course.check_plugin``; ``vlm_course.check`` reads the lines back and
prints the learner's table. Nothing here prints: the pytest run itself is silenced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

OUT_ENV = "VLM_COURSE_CHECK_OUT"


def _first_line(text: str, limit: int = 160) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unfinished(excinfo, submission: Path | None) -> dict | None:
    """Where a NotImplementedError came from in the submission: the method's name and line."""
    if excinfo is None or not excinfo.errisinstance(NotImplementedError) or submission is None:
        return None
    for entry in reversed(excinfo.traceback):
        path = Path(str(entry.path))
        if path.parent == submission:
            code = entry.frame.code.raw
            owner = entry.frame.f_locals.get("self")
            name = code.co_name if owner is None else f"{type(owner).__name__}.{code.co_name}"
            return {"file": path.name, "method": name, "line": code.co_firstlineno}
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    marker = item.get_closest_marker("points")
    target = os.environ.get(OUT_ENV)
    if marker is None or not target or (report.when != "call" and not report.failed):
        return report
    excinfo = call.excinfo if report.failed else None
    folder = os.environ.get("VLM_COURSE_SUBMISSION")
    record = {
        "id": item.nodeid,
        "file": Path(str(item.path)).stem.removeprefix("test_"),
        "test": getattr(item, "originalname", item.name),
        "points": float(marker.args[0]) if marker.args else 1.0,
        "hint": _first_line(marker.kwargs.get("hint", "")),
        "passed": bool(report.passed),
        "error": _first_line(excinfo.exconly()).removeprefix("Failed: ") if excinfo is not None else "",
        "unfinished": _unfinished(excinfo, Path(folder).resolve() if folder else None),
    }
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return report
