"""docs/hardware.md is generated from the load plans and must match them."""

from __future__ import annotations

from vlm_course import hardware


def test_hardware_page_matches_the_code():
    assert hardware.DOC.read_text(encoding="utf-8") == hardware.render(), (
        "docs/hardware.md is out of date; run: python -m vlm_course.hardware --write")


def test_page_covers_every_simulated_machine_with_and_without_cache():
    text = hardware.DOC.read_text(encoding="utf-8")
    assert sum(line.startswith("## ") for line in text.splitlines()) == 2 * len(hardware.SIMULATED)
    assert "| `llava-hf/llava-1.5-7b-hf` | `llava-hf/llava-interleave-qwen-0.5b-hf` | fp32 |" in text
    assert "| `llava-hf/llava-1.5-7b-hf` | `llava-hf/llava-1.5-7b-hf` | fp16 | nf4 |" in text  # T4, cached
