"""The ``vlm-course`` command line: every command's help prints, with its options' defaults."""

from __future__ import annotations

import pytest

from vlm_course.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_prints_its_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vlm-course {name}")


def test_serve_help_shows_the_default_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "-h"]) == 0
    assert "(default: llava-hf/llava-1.5-7b-hf)" in " ".join(capsys.readouterr().out.split())
