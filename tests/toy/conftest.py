"""Known shortfalls of the shipped toy checkpoints against the issue-3 quality bar.

(The LLaVA test files mark their own below-bar tests, next to the assertions.)

These tests assert the bar the course promises. Where the shipped checkpoint does not reach it
yet, the test is marked as an expected failure here, with the measured figure, instead of
loosening its threshold. The marks are strict: once a retrained checkpoint passes, the
"unexpected pass" fails the suite, and the line below must be removed.
"""

from __future__ import annotations

import pytest

BELOW_BAR: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        key = f"{item.path.name}::{item.name}"
        if key in BELOW_BAR:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"below the quality bar: {BELOW_BAR[key]}"))
