"""Model profiles: which checkpoint a course model name becomes.

* ``hub``  - the real checkpoint (downloaded by ``from_pretrained`` or already cached), loaded only
  if it fits this machine;
* ``toy``  - the local toy checkpoint of the same transformers class, trained on ShapesWorld;
* ``auto`` - the real checkpoint when it fits this machine and is cached or a small download, else a
  laptop-size real checkpoint of the same class, else the toy (``vlm_course.loadplan`` has the rules).

The profile comes from the ``profile`` argument, else ``VLM_COURSE_PROFILE``, else ``auto``.
``resolve`` gives only the checkpoint; ``loadplan.plan_load`` also gives dtype, quantization and device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .catalogue import MODELS

PROFILES = ("auto", "hub", "toy")
PROFILE_ENV = "VLM_COURSE_PROFILE"
HUB_TIMEOUT_S = 2.0
REGISTRY = MODELS  # the catalogue under its former name, for callers not yet switched to vlm_course.catalogue


class ProfileError(ValueError):
    """An unknown profile name."""


class HubUnavailableError(RuntimeError):
    """The hub profile was asked for, but the checkpoint is neither cached nor downloadable."""


@dataclass(frozen=True)
class Resolution:
    """What ``resolve`` decided: the profile, the string to pass to ``from_pretrained``, and why."""

    model_id: str
    profile: str
    target: str
    reason: str
    plan: Any = field(default=None, repr=False, compare=False)  # the LoadPlan of a course model, else None

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


def is_cached(model_id: str, revision: str | None = None) -> bool:
    """True when the checkpoint's config and weights (one file or a shard index) are in the local
    Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    def present(filename: str) -> bool:
        try:
            found = try_to_load_from_cache(model_id, filename, cache_dir=hub_cache_dir(), revision=revision)
        except Exception:  # a malformed cache must not break the course
            return False
        return isinstance(found, str)

    return present("config.json") and (present("model.safetensors") or present("model.safetensors.index.json"))


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


def current_profile(profile: str | None = None) -> str:
    """The requested profile: the argument, else ``$VLM_COURSE_PROFILE``, else ``auto``."""
    chosen = (profile or os.environ.get(PROFILE_ENV) or "auto").strip().lower()
    if chosen not in PROFILES:
        raise ProfileError(f"unknown profile {chosen!r}; use one of {', '.join(PROFILES)} (argument or ${PROFILE_ENV})")
    return chosen


def hub_unavailable(model_id: str) -> HubUnavailableError:
    why = "HF_HUB_OFFLINE=1 is set" if hub_offline() else "the Hugging Face hub cannot be reached"
    return HubUnavailableError(
        f"{model_id} is not in the local Hugging Face cache and {why}.\n"
        f"Fix: download it first while online (vlm-course download, or run the lesson once online), "
        f"or use the offline toy profile: {PROFILE_ENV}=toy (or profile='toy')."
    )


def resolve_model(model_id: str, profile: str | None = None, *, verbose: bool = True) -> Resolution:
    """Decide what to load for ``model_id`` under ``profile`` (through ``loadplan.plan_load``).

    A name that is not a course model (a local folder, another hub id) passes through unchanged
    with profile ``"direct"``.
    """
    from .loadplan import plan_if_course_model

    plan = plan_if_course_model(model_id, profile)
    if plan is None:
        res = Resolution(model_id, "direct", model_id, "not a course model; loaded as given")
    else:
        res = Resolution(plan.model, "toy" if plan.source == "toy" else "hub", plan.checkpoint, plan.reason, plan)
    if verbose:
        print(res)
    return res


def resolve(model_id: str, profile: str | None = None, *, verbose: bool = True) -> str:
    """The string to pass to ``from_pretrained`` / ``pipeline(model=...)`` for ``model_id``."""
    return resolve_model(model_id, profile, verbose=verbose).target
