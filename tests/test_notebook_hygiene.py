"""Lessons are committed clean: no outputs, no execution counts, kernelspec python3, and
every hub id they name is a course model whose toy stand-in has the same class."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vlm_course import profiles, toy

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
HUB_ID = re.compile(r"""["'](openai/[\w.-]+|google/[\w.-]+|Salesforce/[\w.-]+|llava-hf/[\w.-]+)["']""")


def test_there_are_lessons():
    assert NOTEBOOKS, "notebooks/ holds no lessons"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_python3_kernel(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} holds outputs; clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_hub_ids_are_known_and_toy_stand_ins_share_the_class(path):
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
    for hub_id in set(HUB_ID.findall(text)):
        entry = profiles.REGISTRY.get(hub_id)
        assert entry is not None, f"{path.name} names {hub_id}, which the profile registry does not know"
        config = json.loads((toy.model_path(entry.toy_name) / "config.json").read_text())
        assert config["architectures"] == [entry.model_class], f"toy {entry.toy_name} is not a {entry.model_class}"
