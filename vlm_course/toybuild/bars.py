"""The course's quality bars for the toy checkpoints, in one place.

``vlm-course eval-toy-models`` measures every bar on 200 fresh scenes of every spec sampler
(``shapesworld.SAMPLERS``); ``tests/toy`` checks them on smaller samples; docs/toy-models.md and
the model cards quote the measured figures. A bar names the metric of the builder's ``evaluate``
that it applies to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import shapesworld as sw
from .data import sampler_suffix


@dataclass(frozen=True)
class Bar:
    """``model``'s ``metric`` (a key of its builder's ``evaluate``) must reach ``bar`` on every sampler."""

    model: str
    metric: str
    bar: float
    task: str


BARS: tuple[Bar, ...] = (
    Bar("clip", "zero-shot top-1, 12 colour-shape labels", 0.95, "zero-shot, 12 colour-shape labels"),
    Bar("siglip", "zero-shot top-1, 12 colour-shape labels", 0.95, "zero-shot, 12 colour-shape labels"),
    Bar("blip-captioning", "caption_exact", 0.85, "exact captions"),
    Bar("blip-vqa", "vqa_accuracy", 0.90, "one-word answers, every question type"),
    Bar("blip2", "captions exact (no prompt)", 0.80, "exact captions"),
    Bar("blip2", "answers ('Question: ... Answer:')", 0.85, "\"Question: ... Answer:\" answers"),
    *(bar for name in ("llava", "llava-next") for bar in (
        Bar(name, "describe_exact", 0.85, "\"The image shows ...\" exact"),
        Bar(name, "answer_word", 0.90, "answer words"),
        Bar(name, "describe_exact_heldout_phrasings", 0.80, "describe, held-out phrasings"),
    )),
    Bar("llava-next", "compare_exact", 0.70, "two-image compare exact"),
)


def bars_of(model: str) -> list[Bar]:
    return [b for b in BARS if b.model == model]


def bar(model: str, metric: str) -> float:
    """The bar of ``model``'s ``metric``; ``KeyError`` if the course sets none."""
    for b in BARS:
        if b.model == model and b.metric == metric:
            return b.bar
    raise KeyError(f"no quality bar for {model} {metric!r}; the bars are in vlm_course/toybuild/bars.py")


def card_scores(model_dir: Path) -> dict[str, float]:
    """The measured scores of a checkpoint's model card (README.md, "## Measured scores" table), as fractions."""
    text = (Path(model_dir) / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Measured scores"):]
    return {m.group(1).strip(): float(m.group(2)) / 100
            for m in re.finditer(r"^\| (.+?) \| (\d+(?:\.\d+)?)% \|$", table, flags=re.MULTILINE)}


def report(model: str, scores: dict[str, float]) -> list[dict]:
    """One row per bar of ``model`` and sampler: measured score (``None`` if not measured) and whether it is met."""
    rows = []
    for b in bars_of(model):
        for sampler in sw.SAMPLERS:
            score = scores.get(b.metric + sampler_suffix(sampler))
            rows.append({"model": model, "metric": b.metric, "task": b.task, "sampler": sampler, "bar": b.bar,
                         "score": score, "met": score is not None and score >= b.bar})
    return rows
