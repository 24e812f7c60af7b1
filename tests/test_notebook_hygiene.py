"""Lessons are committed clean: no outputs, no execution counts, kernelspec python3, and
every hub id they name is a course model whose toy stand-in has the same class.

"Committed" means what ``git add`` would store: the working file passed through the clean filter
that ``.gitattributes`` names (nbstripout, set up by ``make lab`` / ``make test``), so a learner's
run-and-saved notebooks pass while real outputs committed by a maintainer do not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vlm_course import profiles, toy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HUB_ID = re.compile(r"""["'](openai/[\w.-]+|google/[\w.-]+|Salesforce/[\w.-]+|llava-hf/[\w.-]+)["']""")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def in_git_work_tree(repo: Path) -> bool:
    if shutil.which("git") is None:
        return False
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "true"


def committed_notebook(path: Path, repo: Path = ROOT) -> dict:
    """The notebook as ``git add`` would store it (through the clean filter, if one is set up)."""
    if not in_git_work_tree(repo):
        return json.loads(path.read_text(encoding="utf-8"))
    blob = _git(repo, "hash-object", "-w", f"--path={path.relative_to(repo).as_posix()}", str(path)).strip()
    return json.loads(_git(repo, "cat-file", "blob", blob))


def hygiene_problems(nb: dict, name: str) -> list[str]:
    """What is wrong with a notebook about to be committed (empty: nothing)."""
    problems = []
    if nb["metadata"].get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{name}: kernelspec must be python3")
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"{name} cell {i} holds outputs; clear them before committing (or run make lab once)")
            if cell.get("execution_count") is not None:
                problems.append(f"{name} cell {i} has an execution count")
    return problems


def test_there_are_lessons():
    assert NOTEBOOKS, "notebooks/ holds no lessons"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_python3_kernel(path):
    assert hygiene_problems(committed_notebook(path), path.name) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_hub_ids_are_known_and_toy_stand_ins_share_the_class(path):
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
    for hub_id in set(HUB_ID.findall(text)):
        entry = profiles.REGISTRY.get(hub_id)
        assert entry is not None, f"{path.name} names {hub_id}, which the profile registry does not know"
        config = json.loads((toy.model_path(entry.toy_name) / "config.json").read_text())
        assert config["architectures"] == [entry.model_class], f"toy {entry.toy_name} is not a {entry.model_class}"
