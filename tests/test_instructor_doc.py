"""docs/instructor.md names only commands, make targets and files that exist, and its time table
adds up (each agenda sums to its session length)."""

from __future__ import annotations

import re
from pathlib import Path

from vlm_course import cli

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "instructor.md").read_text(encoding="utf-8")


def test_every_command_and_make_target_it_names_exists():
    commands = set(re.findall(r"vlm-course ([a-z][a-z-]+)", DOC))
    assert commands and commands <= set(cli.COMMANDS), commands - set(cli.COMMANDS)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"`make ([a-z][a-z-]*)", DOC))
    assert {"lab", "slides", "check"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is not a Makefile target"


def test_linked_pages_exist():
    for page in re.findall(r"\]\(([a-z-]+\.md)\)", DOC):
        assert (ROOT / "docs" / page).is_file(), page


def test_each_agenda_fills_its_session():
    sections = DOC.split("### ")
    one_day = next(s for s in sections if s.startswith("3시간 (하루)"))
    assert sum(int(m) for m in re.findall(r"\| (\d+)분 \|", one_day)) == 180
    two_days = next(s for s in sections if s.startswith("3시간 × 2회"))
    rows = [re.findall(r"\| (\d+)분 (?=\|)", line) for line in two_days.splitlines() if not line.startswith("| 합계")]
    rows = [r for r in rows if r]
    assert rows and all(len(r) == 2 for r in rows), rows
    assert sum(int(a) for a, _ in rows) == sum(int(b) for _, b in rows) == 180
