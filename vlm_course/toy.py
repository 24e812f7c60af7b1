"""The toy checkpoints shipped inside the package (trained on ShapesWorld)."""

from __future__ import annotations

from pathlib import Path

from .catalogue import TOYS

TOY_MODELS_DIR = Path(__file__).resolve().parent / "toy_models"

# name -> (model class, processor class) exactly as the real checkpoints use them (from the catalogue).
TOY_MODELS: dict[str, tuple[str, str]] = {t.name: (t.model_class, t.processor_class) for t in TOYS.values()}
TOY_NAMES: tuple[str, ...] = tuple(TOY_MODELS)


class ToyModelMissingError(FileNotFoundError):
    """A toy checkpoint folder is not there (not built yet, or a broken install)."""


def model_path(name: str) -> Path:
    """Folder of the toy checkpoint ``name`` (one of ``TOY_NAMES``), ready for ``from_pretrained``."""
    if name not in TOY_MODELS:
        raise KeyError(f"unknown toy model {name!r}; choose one of {', '.join(TOY_NAMES)}")
    path = TOY_MODELS_DIR / name
    if not (path / "config.json").is_file():
        raise ToyModelMissingError(
            f"toy checkpoint {name!r} is missing at {path}. Reinstall the package "
            f"(pip install -e .) or rebuild it with: vlm-course build-toy-models --only {name}"
        )
    return path


def available() -> list[str]:
    """Toy checkpoints present in this install."""
    return [n for n in TOY_NAMES if (TOY_MODELS_DIR / n / "config.json").is_file()]
