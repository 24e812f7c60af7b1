"""The worked solutions of the lessons' "직접 해보기" tasks (``solutions/lessons/NN_*.md``) run and prove their claims.

Each solution file is read like a notebook: its ```python blocks run in order in one namespace, in the
offline toy profile (each file loads its toy models once, in its first block). The claims of the text sit
in the blocks as ``assert`` statements, so a block that runs is a claim that holds. The file's numbered
task headings must match the tasks of its lesson's "직접 해보기" cell.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lessons"
NOTEBOOKS = ROOT / "notebooks"
LESSONS = [p for p in sorted(NOTEBOOKS.glob("0[0-7]_*.ipynb"))]
TASKS_HEADING = re.compile(r"^#+\s*직접 해\s?보기\s*$", re.M)
CODE_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.M | re.S)
TASK_HEADING = re.compile(r"^## (\d+)\. ", re.M)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def solution_path(lesson: Path) -> Path:
    return SOLUTIONS / f"{lesson.stem}.md"


def lesson_tasks(lesson: Path) -> list[int]:
    """The numbers of the tasks listed in the lesson's "직접 해 보기" markdown cell."""
    after = TASKS_HEADING.split(tasks_cell(lesson), maxsplit=1)[1]
    return [int(n) for n in re.findall(r"^(\d+)\. ", after, re.M)]


def tasks_cell(lesson: Path) -> str:
    for cell in nbformat.read(lesson, as_version=4).cells:
        if cell.cell_type == "markdown" and TASKS_HEADING.search(cell.source):
            return cell.source
    raise AssertionError(f"{lesson.name} has no '## 직접 해 보기' cell")


def code_blocks(text: str) -> list[str]:
    return CODE_BLOCK.findall(text)


def test_the_lessons_are_found():
    assert len(LESSONS) == 8, [p.name for p in LESSONS]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem[:2])
def test_every_task_has_a_solution_with_checked_code(lesson):
    path = solution_path(lesson)
    assert path.is_file(), f"{lesson.name}: write its task solutions in {path.relative_to(ROOT)}"
    text = path.read_text(encoding="utf-8")
    sections = TASK_HEADING.split(text)  # [intro, "1", body1, "2", body2, ...]
    numbers = [int(n) for n in sections[1::2]]
    assert numbers == lesson_tasks(lesson), f"{path.name}: task headings {numbers} differ from the lesson's tasks"
    for number, body in zip(numbers, sections[2::2], strict=True):
        blocks = code_blocks(body)
        assert blocks, f"{path.name} task {number}: no ```python block"
        assert any(re.search(r"^\s*assert ", b, re.M) for b in blocks), f"{path.name} task {number}: no assert"
        assert "**결과:**" in body, f"{path.name} task {number}: say what the toy profile shows (**결과:**)"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem[:2])
def test_the_tasks_cell_links_its_solution(lesson):
    link = f"](../solutions/lessons/{lesson.stem}.md)"
    assert link in tasks_cell(lesson), f"{lesson.name}: link the solutions from the tasks cell: [...]{link[1:]}"
    assert solution_path(lesson).is_file()


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem[:2])
def test_solution_code_runs_and_its_claims_hold(lesson, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = solution_path(lesson)
    if not path.is_file():
        pytest.fail(f"missing {path.relative_to(ROOT)}")
    monkeypatch.chdir(tmp_path)  # a solution that writes files writes them here
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        for i, block in enumerate(code_blocks(path.read_text(encoding="utf-8")), start=1):
            name = f"{path.name}, python block {i}"
            linecache.cache[name] = (len(block), None, block.splitlines(keepends=True), name)  # tracebacks show the line
            exec(compile(block, name, "exec"), namespace)
    finally:
        plt.close("all")
