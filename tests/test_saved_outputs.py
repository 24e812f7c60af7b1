"""Saved notebooks stay readable: progress bars end at 100% and no raw ANSI colour codes.

One real Jupyter kernel (the kind nbconvert, nbval and JupyterLab run; its ``FORCE_COLOR=1``
included) runs three cells, and the test reads the outputs as a saved notebook stores them:
a bare ``progress_bar`` loop, lesson 08's indexing (the reference ``index_images`` on toy CLIP)
and lesson 08's self-check when pytest cannot even collect the tests (its error tail). About 15 s.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from vlm_course import progress

REPO = Path(__file__).resolve().parents[1]
ESC = "\x1b["


def _texts(cell) -> list[str]:
    """Every text a saved notebook keeps for ``cell``'s outputs (stream text and each display's mime data)."""
    texts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif "data" in out:
            texts += [str(v) for v in out.data.values()]
        else:  # an error
            texts.append("\n".join(out.get("traceback", [])))
    return texts


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    broken = tmp / "broken_tests"
    broken.mkdir()
    (broken / "test_image_search.py").write_text("import a_module_that_does_not_exist\n")
    cells = [
        """
        from vlm_course.progress import progress_bar
        for _ in progress_bar(range(48), desc="indexing", unit="img"):
            pass
        """,
        f"""
        from vlm_course import shapesworld as sw
        from vlm_course.quiet import quiet_notebook
        from vlm_course.submission import import_file
        quiet_notebook()  # as every lesson starts: hides transformers' own loading bar
        image_search = import_file({str(REPO / "solutions" / "image_search.py")!r})
        search = image_search.CLIPImageSearch("openai/clip-vit-base-patch32", batch_size=3)
        print("added", search.index_images([s.render() for s in sw.sample_scenes(8, seed=1, n_objects=1)]))
        """,
        f"""
        from pathlib import Path
        from vlm_course.check import check
        result = check("image_search", {str(REPO / "solutions")!r}, tests=Path({str(broken)!r}))
        """,
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(src)) for src in cells]
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}).execute()
    return nb


def test_a_progress_bar_is_saved_at_its_final_state(executed):
    cell = executed.cells[0]
    assert len(cell.outputs) == 1, cell.outputs  # one output, replaced in place: not one line per step
    data = cell.outputs[0].data
    assert not any("widget" in mime for mime in data), "a widget is saved as its first state (0%)"
    assert "indexing: 100%" in data["text/plain"] and "48/48" in data["text/plain"], data["text/plain"]
    assert '<progress value="48" max="48">' in data["text/html"]


def test_lesson_08_indexing_shows_a_finished_bar(executed):
    texts = "\n".join(_texts(executed.cells[1]))
    assert "added 8" in texts
    assert "indexing: 100%" in texts and "8/8" in texts and " 0%" not in texts, texts


def test_the_self_check_prints_no_raw_colour_codes_in_a_notebook(executed):
    texts = "\n".join(_texts(executed.cells[2]))
    assert "pytest could not run the tests" in texts and "1 error" in texts, texts
    assert ESC not in texts, f"raw ANSI codes in the saved self-check output: {texts!r}"


def test_outside_a_notebook_it_is_tqdms_text_bar():
    assert not progress.in_notebook()
    out = io.StringIO()
    with progress.progress_bar(total=3, desc="steps", file=out) as bar:
        bar.update(3)
    assert type(bar) is progress.text_tqdm
    assert "steps: 100%" in out.getvalue() and "3/3" in out.getvalue()


def test_a_terminal_gets_colour_and_a_notebook_does_not():
    from vlm_course.check import is_terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert is_terminal(Tty()) and not is_terminal(io.StringIO()) and not is_terminal(object())
