"""The learner-facing exercise tests, shipped with the package.

``vlm-course check`` runs them against a learner's ``exercises/``; ``vlm-course grade`` runs them
against submissions; ``make test`` runs them against ``solutions/``. Each graded test carries
``@pytest.mark.points(n, hint="...")``: its worth, and a Korean hint shown when it fails.
"""

from __future__ import annotations

from pathlib import Path

COURSE_ORDER = ("image_search", "chatbot")  # exercise 1 (notebook 08), exercise 2 (notebook 09)


def folder() -> Path:
    """The folder holding the exercise tests (``test_<exercise>.py``), wherever the package is installed."""
    return Path(__file__).resolve().parent


def exercises() -> list[str]:
    """The exercise names in course order, e.g. ``["image_search", "chatbot"]``: one per ``test_<name>.py``."""
    found = {p.stem.removeprefix("test_") for p in folder().glob("test_*.py")}
    return [n for n in COURSE_ORDER if n in found] + sorted(found - set(COURSE_ORDER))
