"""``make slides``: reveal.js slides from a lesson, one slide per section (exporter run on one notebook)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat

from vlm_course import slides

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "00_setup_and_overview.ipynb"


def test_headings_start_slides_and_other_cells_continue_them():
    md = nbformat.v4.new_markdown_cell
    code = nbformat.v4.new_code_cell
    cells = [md("# 00. 제목"), md("본문"), md("## 1. 절"), code("x = 1"), md("### 직접 해 보기"), md("#태그 아님")]
    assert [slides.slide_type(c, i) for i, c in enumerate(cells)] == ["slide", "-", "slide", "-", "subslide", "-"]
    nb = nbformat.v4.new_notebook(cells=[md("## a"), md("## b")])
    nb.cells[1].metadata["slideshow"] = {"slide_type": "skip"}  # an author's choice is kept
    slides.mark_slides(nb)
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells] == ["slide", "skip"]


def test_a_lesson_becomes_a_reveal_deck(tmp_path):
    out = slides.export(LESSON, tmp_path)
    assert out == tmp_path / "00_setup_and_overview.slides.html"
    page = out.read_text(encoding="utf-8")
    assert "reveal.js" in page and "Reveal.initialize" in page
    nb = nbformat.read(LESSON, as_version=4)
    sections = [c for c in nb.cells if c.cell_type == "markdown" and slides.slide_type(c, 1) == "slide"]
    assert len(sections) >= 5 and page.count("<section") >= len(sections) + 1
    assert "더 읽을거리" in page and "00. " in page


def test_pictures_the_lesson_links_are_copied_next_to_the_deck(tmp_path):
    lesson = ROOT / "notebooks" / "05_llava.ipynb"
    nb = nbformat.read(lesson, as_version=4)
    copies = slides.copy_local_images(nb, lesson.parent, tmp_path)
    assert tmp_path / "figures" / "llava_architecture.svg" in copies
    assert copies[0].read_bytes() == (lesson.parent / "figures" / "llava_architecture.svg").read_bytes()


def test_make_slides_runs_the_exporter_into_the_build_folder():
    dry = subprocess.run(["make", "-n", "slides", "SLIDES_NOTEBOOKS=notebooks/01_clip.ipynb"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "-m vlm_course.slides --out build/slides" in dry and "notebooks/01_clip.ipynb" in dry, dry
    ignored = subprocess.run(["git", "check-ignore", "-q", "build/slides/index.html"], cwd=ROOT)
    assert ignored.returncode == 0, "build/slides/ must be git-ignored"


def test_a_missing_notebook_is_named(tmp_path, capsys):
    assert slides.main(["--out", str(tmp_path), "notebooks/99_nope.ipynb"]) == 2
    assert "99_nope.ipynb" in capsys.readouterr().out
