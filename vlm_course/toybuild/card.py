"""Model cards (README.md) for the toy checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch


def folder_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def score_rows(scores: dict[str, float]) -> str:
    """The rows of a card's "Measured scores" table."""
    return "\n".join(f"| {k} | {v:.1%} |" if isinstance(v, float) and v <= 1 else f"| {k} | {v} |"
                     for k, v in scores.items())


def update_scores(out_dir: Path, scores: dict[str, float]) -> Path:
    """Replace the "Measured scores" table of ``out_dir/README.md`` with ``scores`` (a re-measurement
    of the same weights, e.g. on more samplers); the rest of the card stays as the build wrote it."""
    path = Path(out_dir) / "README.md"
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("## Measured scores")
    if not sep:
        raise ValueError(f"{path} has no '## Measured scores' section; rebuild the checkpoint to write its card")
    title, _, table_and_tail = rest.partition("\n|")
    tail = table_and_tail[table_and_tail.index("\n\n"):]
    path.write_text(f"{head}{sep}{title}\n| metric | score |\n|---|---|\n{score_rows(scores)}{tail}", encoding="utf-8")
    return path


def write_model_card(
    out_dir: Path,
    *,
    name: str,
    model: torch.nn.Module,
    real_checkpoint: str,
    architecture: str,
    recipe: str,
    scores: dict[str, float],
    train_seconds: float,
) -> Path:
    """Write ``out_dir/README.md``: architecture and sizes, data, recipe, measured scores."""
    n_params = sum(p.numel() for p in model.parameters())
    rows = score_rows(scores)
    text = f"""---
library_name: transformers
tags: [vlm-course, toy, shapesworld]
---
# vlm-course toy `{name}`: a `{type(model).__name__}` trained on ShapesWorld

A tiny stand-in for `{real_checkpoint}` with the very same transformers class, so the course's
code runs offline with meaningful output. It knows only ShapesWorld (see the course's
`docs/shapesworld.md`): coloured circles, squares and triangles on a plain background.

## Architecture and size
{architecture}

Parameters: {n_params:,}. Folder size: {folder_megabytes(out_dir):.2f} MB.

## Training data
ShapesWorld v1 scenes rendered at 224 px by `vlm_course.shapesworld`, with fixed seeds; evaluation
uses scenes drawn from seeds never used in training.

## Recipe
{recipe}

Training time on the build machine: {train_seconds:.0f} s (CPU).

## Measured scores (fresh scenes)
| metric | score |
|---|---|
{rows}

Rebuild with `vlm-course build-toy-models --only {name}`; re-measure with `vlm-course eval-toy-models --only {name}`.
"""
    path = Path(out_dir) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
