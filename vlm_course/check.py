"""``vlm-course check [EXERCISE]``: the learner's self-check of ``exercises/``, short enough to read.

Runs only the graded exercise tests (``vlm_course/exercise_tests``) against the learner's files in a
separate, silenced pytest process, then prints one line per test (✓/✗, points, the Korean hint),
the points per exercise and where to start. Exit code 0 only at full marks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from vlm_course import exercise_tests
from vlm_course.check_plugin import OUT_ENV
from vlm_course.submission import SUBMISSION_ENV, SubmissionError, submission_folder

DEFAULT_FOLDER = "exercises"
TIMEOUT_S = 1800


@dataclass
class Row:
    """One test function (all its parametrized cases): points earned and possible, and why it failed."""

    exercise: str
    test: str
    hint: str
    error: str = ""
    unfinished: dict | None = None
    cases: dict[str, tuple[float, bool]] = field(default_factory=dict)  # test id -> (points, passed)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.cases.values())

    @property
    def got(self) -> float:
        return sum(points for points, ok in self.cases.values() if ok)

    @property
    def total(self) -> float:
        return sum(points for points, _ in self.cases.values())


@dataclass
class CheckResult:
    """What ``check`` found: the rows in test order and the folder it checked."""

    folder: Path
    exercises: list[str]
    rows: list[Row]
    problem: str = ""  # the run itself failed (no rows): what happened

    def points(self, exercise: str | None = None) -> tuple[float, float]:
        rows = [r for r in self.rows if exercise in (None, r.exercise)]
        return sum(r.got for r in rows), sum(r.total for r in rows)

    @property
    def full_marks(self) -> bool:
        got, total = self.points()
        return not self.problem and total > 0 and got == total

    def start_here(self) -> str:
        """The first unfinished method (in file order), else the first failing test, else ''."""
        todo = [r.unfinished for r in self.rows if r.unfinished]
        if todo:
            first = min(todo, key=lambda u: (self.exercises.index(u["exercise"]), u["line"]))
            return f"{first['file']}의 {first['method']} ({first['line']}행): TODO를 채우세요"
        failed = next((r for r in self.rows if not r.passed), None)
        if failed is None:
            return ""
        return f"{failed.exercise}의 {_short(failed.test)}: {failed.hint or failed.error}"


def _short(test: str) -> str:
    return test.removeprefix("test_")


def find_folder(folder: str | os.PathLike | None = None) -> Path:
    """The learner's folder: ``folder``, else ``$VLM_COURSE_SUBMISSION``, else ``exercises/`` here or one level up
    (a notebook runs in ``notebooks/``)."""
    if folder is None and not os.environ.get(SUBMISSION_ENV):
        here = Path.cwd()
        found = next((d / DEFAULT_FOLDER for d in (here, here.parent) if (d / DEFAULT_FOLDER).is_dir()), None)
        if found is None:
            raise SubmissionError(f"no {DEFAULT_FOLDER}/ folder in {here} or {here.parent}: run this in the course "
                                  f"folder, or name your folder (vlm-course check --submission DIR)")
        return found.resolve()
    return submission_folder(folder)


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def is_terminal(stream: TextIO) -> bool:
    """True only for a real terminal: a notebook's output (whose kernel sets ``FORCE_COLOR=1``) and files are not."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def run_tests(exercises: list[str], folder: Path, out: Path, timeout: float = TIMEOUT_S, tests: Path | None = None,
              progress: Callable[[int], None] | None = None, color: bool = False) -> str:
    """Run the exercise tests of ``exercises`` on ``folder`` silently; records go to ``out``. Returns a problem or ''.

    ``progress(n)`` is called with the number of tests recorded so far, as they finish. ``color``: let pytest
    colour its messages (for a real terminal only; otherwise raw escape codes would reach the report).
    """
    files = [(tests or exercise_tests.folder()) / f"test_{name}.py" for name in exercises]
    env = dict(os.environ, **{OUT_ENV: str(out), SUBMISSION_ENV: str(folder)})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLM_COURSE_PROFILE", "toy")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, "-m", "pytest", *map(str, files), "-p", "vlm_course.check_plugin", "-p", "no:cacheprovider",
           "-p", "no:nbval", "-q", "--no-header", "--tb=no", f"--color={'yes' if color else 'no'}"]
    log = out.with_suffix(".log")
    seen = 0
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=folder.parent, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return f"the tests took longer than {timeout / 60:.0f} minutes and were stopped (an endless loop?)"
            time.sleep(0.3)
            if progress is not None and (now := _count_lines(out)) != seen:
                seen = now
                progress(seen)
    if progress is not None and (now := _count_lines(out)) != seen:
        progress(now)
    if proc.returncode not in (0, 1):  # 1: some tests failed; anything else: pytest itself could not run
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        return "pytest could not run the tests: " + " / ".join(tail)
    return ""


def collect(exercises: list[str], records: list[dict]) -> list[Row]:
    """Group the plugin's records by test function, in the order the tests ran."""
    rows: dict[tuple[str, str], Row] = {}
    for rec in records:
        row = rows.setdefault((rec["file"], rec["test"]), Row(rec["file"], rec["test"], rec["hint"]))
        _, ok = row.cases.get(rec["id"], (0.0, True))
        row.cases[rec["id"]] = (rec["points"], ok and rec["passed"])  # a failed setup or teardown fails the case
        if not rec["passed"]:
            row.error = row.error or rec["error"]
            if rec["unfinished"] and not row.unfinished:
                row.unfinished = dict(rec["unfinished"], exercise=rec["file"])
    order = {name: i for i, name in enumerate(exercises)}
    return sorted(rows.values(), key=lambda r: order.get(r.exercise, len(order)))


def check(exercise: str | None = None, folder: str | os.PathLike | None = None, *, stream: TextIO | None = None,
          timeout: float = TIMEOUT_S, tests: Path | None = None) -> CheckResult:
    """Check the learner's exercise files and print the short report; returns what was found.

    ``exercise``: ``"image_search"`` or ``"chatbot"`` (default: every exercise). ``folder``: the
    learner's folder (default: ``exercises/`` in the current folder or one level up). ``tests``:
    another folder of ``test_<exercise>.py`` files (default: the course's exercise tests).
    """
    stream = stream or sys.stdout
    known = exercise_tests.exercises()
    if exercise is not None and exercise not in known:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {', '.join(known)}")
    chosen = [exercise] if exercise else known
    where = find_folder(folder)
    print(f"자가 점검: {where} 의 {', '.join(f'{n}.py' for n in chosen)} (토이 모델로 채점 테스트 실행 중, 1-3분) ",
          end="", file=stream, flush=True)
    dots = 0

    def progress(n: int) -> None:  # one dot per finished test
        nonlocal dots
        print("." * (n - dots), end="", file=stream, flush=True)
        dots = n

    with tempfile.TemporaryDirectory(prefix="vlm-check-") as tmp:
        out = Path(tmp) / "records.jsonl"
        problem = run_tests(chosen, where, out, timeout, tests, progress, color=is_terminal(stream))
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    print(file=stream, flush=True)
    result = CheckResult(where, chosen, collect(chosen, [json.loads(line) for line in lines]), problem)
    if not result.rows and not result.problem:
        result.problem = "no graded test ran"
    print(report(result), file=stream, flush=True)
    return result


def report(result: CheckResult) -> str:
    """The printed report: one line per test, the points per exercise, and where to start."""
    lines: list[str] = []
    for name in result.exercises:
        rows = [r for r in result.rows if r.exercise == name]
        if not rows:
            continue
        lines.append("")
        lines.append(f"[{name}]")
        width = max(len(_short(r.test)) for r in rows)
        todo_left = any(r.unfinished for r in rows)  # errors matter once every method is written
        for r in rows:
            mark = "✓" if r.passed else "✗"
            text = f"  {mark} {r.got:>3g}/{r.total:<3g} {_short(r.test):<{width}}"
            if not r.passed:
                reason = r.hint if todo_left or not r.error else f"{r.hint}  ({r.error})" if r.hint else r.error
                text += f"  {reason}"
            lines.append(text.rstrip())
        got, total = result.points(name)
        lines.append(f"  {name}: {got:g} / {total:g}점")
    lines.append("")
    if result.problem:
        lines.append(f"검사를 끝내지 못했습니다: {result.problem}")
    elif result.full_marks:
        lines.append("만점입니다. 수고했습니다!")
    else:
        if len(result.exercises) > 1:
            got, total = result.points()
            lines.append(f"합계 {got:g} / {total:g}점")
        lines.append(f"여기서 시작하세요 (start here): {result.start_here()}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("exercise", nargs="?", choices=exercise_tests.exercises(),
                        help="one exercise (default: all of them)")
    parser.add_argument("--submission", metavar="DIR", default=None,
                        help=f"your exercise folder (default: ./{DEFAULT_FOLDER}, or ${SUBMISSION_ENV})")


def run(args: argparse.Namespace) -> int:
    try:
        result = check(args.exercise, args.submission)
    except SubmissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.full_marks else 1
