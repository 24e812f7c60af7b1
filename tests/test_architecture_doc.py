"""docs/architecture.md maps every module of the package: a new module needs its line there."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import vlm_course

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_every_module_and_subpackage_is_on_the_map():
    text = DOC.read_text(encoding="utf-8")
    names = [m.name for m in pkgutil.iter_modules(vlm_course.__path__) if m.name != "toy_models"]
    assert len(names) > 20
    missing = [n for n in names if f"`{n}`" not in text and f"`{n}/`" not in text and f"{n}.py" not in text]
    assert not missing, f"docs/architecture.md does not mention {missing}: add each to the table of audiences (one line: what it does)"
