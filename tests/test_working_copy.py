"""A learner's working copy: running and saving every notebook in JupyterLab changes nothing git
would commit, the learner's own edits still show, and course updates come in without losing them.

A small course repository (notebooks, exercises, Makefile, .gitattributes, .gitignore) is made in a
temporary folder and cloned as a learner would; ``make notebook-filter`` (what ``make lab`` runs)
sets up the filter. Notebooks are saved through jupyter_server's ``AsyncLargeFileManager`` (the
code behind JupyterLab's save and autosave) with the post-save hook ``make lab`` configures, and
with outputs, execution counts, widget state and the metadata JupyterLab writes. About 10 s.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from test_notebook_hygiene import committed_notebook, hygiene_problems

ROOT = Path(__file__).resolve().parents[1]
COURSE_FILES = ("Makefile", ".gitattributes", ".gitignore")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
LAB_METADATA = {  # what JupyterLab 4 with ipykernel writes on save
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                      "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                      "pygments_lexer": "ipython3", "version": "3.99.1"},
    "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}},
}

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Learner", "-c", "user.email=learner@example.com",
                           "-c", "init.defaultBranch=main", *args], capture_output=True, text=True)
    assert done.returncode == 0 or not check, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def status(repo: Path) -> list[str]:
    return git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()


def lab_save_hook() -> str:
    """The post-save hook ``make lab`` gives JupyterLab (read from the Makefile)."""
    found = re.search(r"--ContentsManager\.post_save_hook=(\S+)", (ROOT / "Makefile").read_text())
    assert found, "make lab sets no post-save hook"
    return found.group(1)


def run_and_save(repo: Path, name: str, edit=None) -> None:
    """What a learner's "Run All" then save does to ``notebooks/<name>``, through the server's save code."""
    asyncio.run(_run_and_save(repo, name, edit))


async def _run_and_save(repo: Path, name: str, edit) -> None:
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    manager = AsyncLargeFileManager(root_dir=str(repo / "notebooks"), post_save_hook=lab_save_hook())
    nb = (await manager.get(name))["content"]
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if edit is not None:
            cell.source = edit(cell.source)
        count += 1
        cell.execution_count = count
        cell.metadata["execution"] = {"iopub.execute_input": "2026-12-07T05:00:00.000001Z"}
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=f"cell {count} ran\n"),
            nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
            nbformat.v4.new_output("execute_result", data={"text/plain": repr(count)}, execution_count=count),
        ]
    nb.metadata.update(LAB_METADATA)
    await manager.save({"type": "notebook", "format": "json", "content": nb}, name)
    await manager.create_checkpoint(name)  # Ctrl+S also writes .ipynb_checkpoints/


def later(path: Path) -> None:
    """Move the file's time forward, so git looks at its content again (as after a real save)."""
    t = time.time() + 5
    os.utime(path, (t, t))


@pytest.fixture
def course(tmp_path) -> tuple[Path, Path]:
    """(the course's repository, a learner's clone of it with ``make notebook-filter`` done)."""
    origin = tmp_path / "course"
    (origin / "notebooks").mkdir(parents=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(path, origin / "notebooks" / path.name)
    shutil.copytree(ROOT / "exercises", origin / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
    for name in COURSE_FILES:
        shutil.copy2(ROOT / name, origin / name)
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "course")
    learner = tmp_path / "learner"
    git(tmp_path, "clone", "-q", str(origin), str(learner))
    done = subprocess.run(["make", "-s", "-C", str(learner), "notebook-filter", f"VENV={sys.prefix}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return origin, learner


def test_a_fresh_clone_with_the_filter_is_clean(course):
    _, learner = course
    assert "nbstripout" in git(learner, "config", "filter.nbstripout.clean")
    for path in (learner / "notebooks").glob("*.ipynb"):
        later(path)  # git re-reads each notebook through the filter: the committed form is already clean
    assert status(learner) == []


def test_running_and_saving_every_notebook_changes_nothing_git_would_commit(course):
    _, learner = course
    names = sorted(p.name for p in (learner / "notebooks").glob("*.ipynb"))
    for name in names:
        run_and_save(learner, name)
    saved = (learner / "notebooks" / names[0]).read_text(encoding="utf-8")
    assert '"output_type": "stream"' in saved and '"version": "3.99.1"' in saved  # the working files hold the run
    assert (learner / "notebooks" / ".ipynb_checkpoints").is_dir()
    assert status(learner) == [], "saved notebooks show as changes"
    for name in names:
        path = learner / "notebooks" / name
        assert hygiene_problems(committed_notebook(path, learner), name) == []


def test_a_learners_own_edit_still_shows_without_outputs(course):
    _, learner = course
    name = "08_exercise_image_search.ipynb"
    run_and_save(learner, name, edit=lambda src: src.replace('SUBMISSION = "solutions"', 'SUBMISSION = "exercises"'))
    assert status(learner) == [f" M notebooks/{name}"]
    diff = git(learner, "diff")
    changed = [line for line in diff.splitlines() if line.startswith(("+ ", "- ", '+"', '-"', "+  ", "-  "))]
    assert any('SUBMISSION = \\"exercises\\"' in line for line in changed), diff
    assert "output_type" not in diff and "execution_count" not in diff and "3.99.1" not in diff, diff


def test_course_updates_arrive_and_the_learners_work_stays(course):
    origin, learner = course
    for name in sorted(p.name for p in (learner / "notebooks").glob("*.ipynb")):
        run_and_save(learner, name, edit=lambda src: src.replace("quiet_notebook()\n", "quiet_notebook()  # mine\n"))
    exercise = learner / "exercises" / "image_search.py"
    exercise.write_text(exercise.read_text(encoding="utf-8") + "\n# my notes\n", encoding="utf-8")

    lesson = origin / "notebooks" / "01_clip.ipynb"  # the course changes a lesson the learner ran
    nb = nbformat.read(lesson, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A new note from the course."))
    nbformat.write(nb, lesson)
    git(origin, "commit", "-q", "-am", "course update")

    git(learner, "stash")  # the README's three commands
    git(learner, "pull", "-q")
    git(learner, "stash", "pop")
    assert "A new note from the course." in (learner / "notebooks" / "01_clip.ipynb").read_text(encoding="utf-8")
    assert exercise.read_text(encoding="utf-8").endswith("# my notes\n")
    assert "# mine" in (learner / "notebooks" / "01_clip.ipynb").read_text(encoding="utf-8")
    assert " M exercises/image_search.py" in status(learner)


def test_the_save_hook_leaves_files_outside_git_and_untracked_files_alone(tmp_path, course):
    from vlm_course.notebook_git import refresh_after_save, refresh_if_unchanged

    loose = tmp_path / "loose.ipynb"
    loose.write_text("{}")
    assert refresh_if_unchanged(loose) is False
    _, learner = course
    new = learner / "notebooks" / "mine.ipynb"
    new.write_text("{}")
    assert refresh_if_unchanged(new) is False
    assert "?? notebooks/mine.ipynb" in status(learner)
    refresh_after_save(model={"type": "file"}, os_path=str(new))  # not a notebook save: ignored
    refresh_after_save(model={"type": "notebook"}, os_path=str(tmp_path / "gone.ipynb"))  # never raises
