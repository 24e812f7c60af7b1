"""Slides from the lessons (``make slides``): one reveal.js HTML file per notebook, one slide per section.

The notebooks carry no slide metadata, so ``mark_slides`` assigns it while exporting (the files
are not changed): a ``#`` or ``##`` heading starts a slide, ``###`` a sub-slide (reveal.js: down
arrow), every other cell continues the slide it follows; long slides scroll. Cells that already
have a ``slideshow.slide_type`` keep it. ``--execute`` runs each notebook first (toy profile unless
``VLM_COURSE_PROFILE`` says otherwise), so the slides show outputs and plots.

    python -m vlm_course.slides --out build/slides notebooks/*.ipynb [--execute]

reveal.js itself is loaded from a CDN when the HTML is opened (nbconvert's default); offline, pass
``--reveal-prefix`` a local reveal.js folder.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter
from nbconvert.preprocessors import ExecutePreprocessor

HEADING = re.compile(r"^(#{1,3}) \S")


def slide_type(cell: nbformat.NotebookNode, index: int) -> str:
    """``slide``, ``subslide`` or ``-`` (continue) for the ``index``-th cell."""
    if index == 0:
        return "slide"
    if cell.cell_type == "markdown" and (m := HEADING.match(cell.source)):
        return "subslide" if len(m.group(1)) == 3 else "slide"
    return "-"


def mark_slides(nb: nbformat.NotebookNode) -> None:
    """Set each cell's ``slideshow.slide_type`` from the lesson's headings (unless it has one), in place.

    Done before exporting: the exporter's own reveal.js preprocessor groups cells by this metadata.
    """
    for index, cell in enumerate(nb.cells):
        cell.metadata.setdefault("slideshow", {}).setdefault("slide_type", slide_type(cell, index))


def export(notebook: Path, out_dir: Path, *, execute: bool = False, reveal_prefix: str | None = None) -> Path:
    """Write ``out_dir/<name>.slides.html`` for ``notebook`` and return its path."""
    nb = nbformat.read(notebook, as_version=4)
    if execute:
        os.environ.setdefault("VLM_COURSE_PROFILE", "toy")
        ExecutePreprocessor(timeout=600).preprocess(nb, {"metadata": {"path": str(notebook.resolve().parent)}})
    mark_slides(nb)
    exporter = SlidesExporter(reveal_scroll=True)
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{notebook.stem}.slides.html"
    out.write_text(body, encoding="utf-8")
    copy_local_images(nb, notebook.parent, out_dir)
    return out


LOCAL_IMAGE = re.compile(r"!\[[^\]]*\]\((?!https?:|data:)([^)\s]+)\)")


def copy_local_images(nb: nbformat.NotebookNode, source_dir: Path, out_dir: Path) -> list[Path]:
    """Copy the pictures the markdown links by relative path (``figures/x.svg``) next to the deck, so the
    slides show them as the notebook does; returns the copies."""
    copies = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for link in LOCAL_IMAGE.findall(cell.source):
            source, target = source_dir / link, out_dir / link
            if source.is_file() and target.resolve().is_relative_to(out_dir.resolve()):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copies.append(target)
    return copies


def write_index(pages: list[Path], out_dir: Path) -> Path:
    """A small ``index.html`` linking every slide deck."""
    items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.name.removesuffix(".slides.html"))}</a></li>'
                      for p in pages)
    index = out_dir / "index.html"
    index.write_text(f'<!doctype html>\n<meta charset="utf-8">\n<title>VLM course slides</title>\n'
                     f"<h1>VLM course slides</h1>\n<ul>\n{items}\n</ul>\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="the lessons to turn into slides")
    parser.add_argument("--out", type=Path, default=Path("build/slides"), help="output folder (default: build/slides)")
    parser.add_argument("--execute", action="store_true", help="run each notebook first so the slides show outputs")
    parser.add_argument("--reveal-prefix", default=None, help="where reveal.js is (default: nbconvert's CDN)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)} (run from the repository root, e.g. notebooks/01_clip.ipynb)")
        return 2
    pages = []
    for notebook in args.notebooks:
        pages.append(export(notebook, args.out, execute=args.execute, reveal_prefix=args.reveal_prefix))
        print("wrote", pages[-1])
    print("wrote", write_index(pages, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
