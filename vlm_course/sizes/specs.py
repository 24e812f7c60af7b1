"""Architecture configs of the course's real checkpoints: a view of ``vlm_course.catalogue``.

The configs themselves live in ``vlm_course.architectures``; the catalogue says which belongs to
which hub id. ``config(name)`` is kept for the toy builders and lessons that ask for a real config.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from ..catalogue import CourseModel, UnknownModelError, course_model

__all__ = ["UnknownModelError", "config", "spec"]


def spec(model_id: str | CourseModel) -> CourseModel:
    """The catalogue record of a hub id or toy name (``UnknownModelError`` otherwise)."""
    return course_model(model_id)


def config(model_id: str | CourseModel) -> PretrainedConfig:
    """A fresh config object of ``model_id`` (safe to modify)."""
    return course_model(model_id).config()
