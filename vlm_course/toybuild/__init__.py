"""Builders of the toy checkpoints: ``vlm-course build-toy-models`` / ``eval-toy-models``.

Each builder module exposes::

    build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path]) -> dict
    evaluate(name: str, model_dir: Path, n: int = 200) -> dict[str, float]

``build`` trains from fixed seeds and saves a Hugging Face folder (model, processor, model card);
``smoke=True`` runs a few steps only (CI proves the builder works). ``deps`` maps the names of
checkpoints a builder starts from (LLaVA takes its vision tower from the toy CLIP) to folders.
"""

from __future__ import annotations

import importlib

from ..catalogue import TOYS

# Views of the catalogue's toy records (vlm_course.catalogue.TOYS).
BUILDERS: dict[str, str] = {t.name: t.builder for t in TOYS.values()}
DEPENDS_ON: dict[str, tuple[str, ...]] = {t.name: t.depends_on for t in TOYS.values() if t.depends_on}


def builder(name: str):
    if name not in BUILDERS:
        raise KeyError(f"unknown toy model {name!r}; choose from {', '.join(BUILDERS)}")
    return importlib.import_module(BUILDERS[name])


def build_order(names: list[str]) -> list[str]:
    """``names`` in an order where each model comes after what it starts from."""
    order = [n for n in BUILDERS if n in names]
    return order


# Build minutes of each model on one core (catalogue.TOYS: from a `--jobs 2` run of all seven on a
# 2-core machine); only the order of a parallel build depends on them.
BUILD_MINUTES: dict[str, float] = {t.name: t.build_minutes for t in TOYS.values()}


def critical_path(name: str) -> float:
    """Minutes from starting ``name`` until everything built from it is done (llava-next after llava
    after clip). A parallel build starts the longest path first."""
    children = [n for n, deps in DEPENDS_ON.items() if name in deps]
    return BUILD_MINUTES.get(name, 1) + max((critical_path(c) for c in children), default=0)


def ready_to_build(pending: list[str], done: set[str], order: list[str]) -> list[str]:
    """The ``pending`` models (of a build of ``order``) whose sources are built or not part of this
    build, longest critical path first."""
    ready = [n for n in pending if all(d in done or d not in order for d in DEPENDS_ON.get(n, ()))]
    return sorted(ready, key=critical_path, reverse=True)
