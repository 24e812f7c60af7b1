"""Lesson 05's LLaVA figure and the "내 사진으로 해 보기" cells of lessons 01, 03 and 05."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SVG = "{http://www.w3.org/2000/svg}"


def lesson(prefix: str) -> nbformat.NotebookNode:
    return nbformat.read(next(NOTEBOOKS.glob(f"{prefix}_*.ipynb")), as_version=4)


def test_lesson_05_shows_the_llava_figure_with_what_each_stage_trains():
    images = [m for c in lesson("05").cells if c.cell_type == "markdown"
              for m in re.findall(r"!\[[^\]]*\]\(([^)]+\.svg)\)", c.source)]
    assert images == ["figures/llava_architecture.svg"]
    svg = NOTEBOOKS / images[0]  # relative to the notebook, so JupyterLab (rooted at notebooks/) serves it
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for label in ("CLIP ViT-L/14-336", "2층 MLP", "Vicuna", "1단계: 특징 정렬", "2단계: 시각 지시 튜닝"):
        assert label in texts, label
    # stage rows: vision encoder, projector, LLM -> frozen / trained / frozen, then frozen / trained / trained
    rows = {}
    for t in root.iter(f"{SVG}text"):
        if t.text in ("고정", "학습"):
            rows.setdefault(int(t.get("y")), []).append((float(t.get("x")), t.text))
    assert [[label for _, label in sorted(r)] for _, r in sorted(rows.items())] == [
        ["고정", "학습", "고정"], ["고정", "학습", "학습"]]


@pytest.mark.parametrize("prefix", ["01", "03", "05"])
def test_own_photo_cell_uses_the_course_loader_with_the_bundled_default(prefix):
    cells = lesson(prefix).cells
    heading = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## 내 사진으로 해 보기")]
    assert len(heading) == 1, f"lesson {prefix}: one '## 내 사진으로 해 보기' section"
    code = cells[heading[0] + 1]
    assert code.cell_type == "code"
    assert "MY_IMAGE = None" in code.source and "photo_example(MY_IMAGE" in code.source
    assert "answer_mark(" in code.source  # the bundled photo's outputs are marked against its key


def test_the_photo_cells_describe_the_bundled_photo_as_it_is():
    from vlm_course.examples import sample_photo_scene

    assert sample_photo_scene().caption == "a red square and a yellow circle"  # as the cells say:
    for prefix in ("01", "03", "05"):
        text = next(c.source for c in lesson(prefix).cells if c.source.startswith("## 내 사진으로 해 보기"))
        assert "빨간 사각형과 노란 원" in text and "640×480" in text
