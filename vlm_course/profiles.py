"""Model profiles: turn a hub checkpoint id into what to load.

* ``hub``  - the real checkpoint id (downloaded by ``from_pretrained`` or already cached);
* ``toy``  - the local toy checkpoint of the same transformers class, trained on ShapesWorld;
* ``auto`` - ``hub`` when the checkpoint is cached or the hub answers within ~2 s, else ``toy``.

The profile comes from the ``profile`` argument, else ``VLM_COURSE_PROFILE``, else ``auto``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from . import toy

PROFILES = ("auto", "hub", "toy")
PROFILE_ENV = "VLM_COURSE_PROFILE"
HUB_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CourseModel:
    """A real checkpoint the lessons name, and its toy stand-in."""

    hub_id: str
    toy_name: str
    model_class: str
    task: str
    lessons: tuple[str, ...]


REGISTRY: dict[str, CourseModel] = {
    m.hub_id: m
    for m in (
        CourseModel("openai/clip-vit-base-patch32", "clip", "CLIPModel", "zero-shot-image-classification", ("01", "08")),
        CourseModel("openai/clip-vit-large-patch14", "clip", "CLIPModel", "zero-shot-image-classification", ("01",)),
        CourseModel("google/siglip-base-patch16-224", "siglip", "SiglipModel", "zero-shot-image-classification", ("02",)),
        CourseModel("Salesforce/blip-image-captioning-base", "blip-captioning", "BlipForConditionalGeneration", "image-text-to-text", ("03",)),
        CourseModel("Salesforce/blip-vqa-base", "blip-vqa", "BlipForQuestionAnswering", "visual-question-answering", ("03",)),
        CourseModel("Salesforce/blip2-opt-2.7b", "blip2", "Blip2ForConditionalGeneration", "image-text-to-text", ("04", "06")),
        CourseModel("llava-hf/llava-1.5-7b-hf", "llava", "LlavaForConditionalGeneration", "image-text-to-text", ("05", "06", "09")),
        CourseModel("llava-hf/llava-v1.6-mistral-7b-hf", "llava-next", "LlavaNextForConditionalGeneration", "image-text-to-text", ("05",)),
        CourseModel("llava-hf/llama3-llava-next-8b-hf", "llava-next", "LlavaNextForConditionalGeneration", "image-text-to-text", ("05",)),
    )
}


class ProfileError(ValueError):
    """An unknown profile or model id."""


class HubUnavailableError(RuntimeError):
    """The hub profile was asked for, but the checkpoint is neither cached nor downloadable."""


@dataclass(frozen=True)
class Resolution:
    """What ``resolve`` decided: the profile, the string to pass to ``from_pretrained``, and why."""

    model_id: str
    profile: str
    target: str
    reason: str

    def __str__(self) -> str:
        return f"[vlm-course] {self.model_id}: profile '{self.profile}' ({self.reason}) -> {self.target}"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the Hugging Face client is told to stay offline."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def is_cached(model_id: str) -> bool:
    """True when the checkpoint's config is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json", cache_dir=hub_cache_dir())
    except Exception:  # a malformed cache must not break the course
        return False
    return isinstance(found, str)


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True when the hub answers within ``timeout`` seconds (checked once per process)."""
    if hub_offline():
        return False
    import requests
    from huggingface_hub import constants

    try:
        requests.head(constants.ENDPOINT, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def course_model(model_id: str) -> CourseModel:
    """The registry entry for a hub id (or for a toy name, its first hub id)."""
    if model_id in REGISTRY:
        return REGISTRY[model_id]
    for m in REGISTRY.values():
        if m.toy_name == model_id:
            return m
    known = "\n  ".join(REGISTRY)
    raise ProfileError(f"{model_id!r} is not a course model. Known checkpoints:\n  {known}")


def current_profile(profile: str | None = None) -> str:
    """The requested profile: the argument, else ``$VLM_COURSE_PROFILE``, else ``auto``."""
    chosen = (profile or os.environ.get(PROFILE_ENV) or "auto").strip().lower()
    if chosen not in PROFILES:
        raise ProfileError(f"unknown profile {chosen!r}; use one of {', '.join(PROFILES)} (argument or ${PROFILE_ENV})")
    return chosen


def _hub_unavailable(model_id: str) -> HubUnavailableError:
    why = "HF_HUB_OFFLINE=1 is set" if hub_offline() else "the Hugging Face hub cannot be reached"
    return HubUnavailableError(
        f"{model_id} is not in the local Hugging Face cache and {why}.\n"
        f"Fix: download it first while online (vlm-course download, or run the lesson once online), "
        f"or use the offline toy profile: {PROFILE_ENV}=toy (or profile='toy')."
    )


def resolve_model(model_id: str, profile: str | None = None, *, verbose: bool = True) -> Resolution:
    """Decide what to load for ``model_id`` under ``profile``; see the module docstring."""
    entry = course_model(model_id)
    chosen = current_profile(profile)
    if chosen == "toy":
        res = Resolution(entry.hub_id, "toy", str(toy.model_path(entry.toy_name)), "toy profile requested")
    elif is_cached(entry.hub_id):
        res = Resolution(entry.hub_id, "hub", entry.hub_id, "found in the local Hugging Face cache")
    elif chosen == "hub":
        if not hub_reachable():
            raise _hub_unavailable(entry.hub_id)
        res = Resolution(entry.hub_id, "hub", entry.hub_id, "hub profile requested; will download")
    elif hub_reachable():
        res = Resolution(entry.hub_id, "hub", entry.hub_id, "hub reachable; will download")
    else:
        why = "HF_HUB_OFFLINE=1" if hub_offline() else f"hub unreachable within {HUB_TIMEOUT_S:g} s"
        res = Resolution(entry.hub_id, "toy", str(toy.model_path(entry.toy_name)), f"not cached and {why}")
    if verbose:
        print(res)
    return res


def resolve(model_id: str, profile: str | None = None, *, verbose: bool = True) -> str:
    """The string to pass to ``from_pretrained`` / ``pipeline(model=...)`` for ``model_id``."""
    return resolve_model(model_id, profile, verbose=verbose).target
