"""docs/toy-models.md quotes the model cards' measured scores: keep the two in step."""

from __future__ import annotations

import re
from pathlib import Path

from vlm_course import toy

DOC = Path(__file__).resolve().parents[1] / "docs" / "toy-models.md"


def _percent(text: str) -> set[float]:
    return {float(x) for x in re.findall(r"(\d+(?:\.\d+)?)%", text)}


def test_every_measured_figure_in_the_doc_is_on_the_model_card():
    rows = [line for line in DOC.read_text().splitlines() if re.match(r"\| `[a-z0-9-]+` \|", line)]
    assert {re.match(r"\| `([a-z0-9-]+)`", r).group(1) for r in rows} == set(toy.TOY_NAMES)
    for row in rows:
        name = re.match(r"\| `([a-z0-9-]+)`", row).group(1)
        measured = row.rstrip(" |").rsplit("|", 1)[1]
        card = (toy.model_path(name) / "README.md").read_text()
        scores = card[card.index("## Measured scores"):]
        missing = _percent(measured) - _percent(scores)
        assert not missing, f"{name}: docs/toy-models.md quotes {sorted(missing)}% but its model card does not"
