"""Prefetch the hub checkpoints a lesson needs into the Hugging Face cache (``vlm-course download``).

The checkpoints come from the catalogue (``vlm_course.catalogue``): hub id, lessons, download size,
stored dtype and pinned ``revision``. After a download a lab can run with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..catalogue import ALLOW_PATTERNS, MODELS, CourseModel, lesson_models, lessons, normalize_lesson
from .fit import Machine, gb


class DownloadError(RuntimeError):
    """A download cannot start or failed; the message says what to do."""


@dataclass(frozen=True)
class ManifestEntry:
    hub_id: str
    lessons: tuple[str, ...]
    download_bytes: int
    stored_dtype: str
    revision: str | None
    allow_patterns: tuple[str, ...]


def entry(model: CourseModel) -> ManifestEntry:
    """The download of one catalogue checkpoint (a stand-in lists the lessons of the models it replaces)."""
    lessons = model.lessons or tuple(sorted({n for seed in model.stands_in_for for n in MODELS[seed].lessons}))
    return ManifestEntry(model.hub_id, lessons, model.download_bytes, model.stored_dtype, model.revision,
                         ALLOW_PATTERNS)


def load_manifest() -> list[ManifestEntry]:
    """One entry per catalogue checkpoint (``vlm_course.catalogue.MODELS``)."""
    return [entry(m) for m in MODELS.values()]


def lesson_plan(lesson: str | int, machine: Machine | None = None,
                profile: str | None = None) -> tuple[list[ManifestEntry], list[str]]:
    """What lesson ``lesson`` will load on ``machine`` (default: this one, taken as online) under its load
    plans with download consent: the checkpoints to fetch, and one line per model saying what it loads.

    Raises ``DownloadError`` when the hub profile cannot fit a checkpoint (before anything is fetched).
    """
    from ..loadplan import ModelDoesNotFitError, plan_load

    models = lesson_models(lesson)
    if not models:
        raise DownloadError(f"lesson {normalize_lesson(lesson)} loads no hub checkpoint; lessons with checkpoints: "
                            f"{', '.join(lessons())}")
    machine = machine or replace(Machine.detect(), online=True)
    entries: list[ManifestEntry] = []
    notes: list[str] = []
    for model in models:
        try:
            plan = plan_load(model, profile, machine, allow_download=True)
        except ModelDoesNotFitError as exc:
            raise DownloadError(str(exc)) from exc
        notes.append(f"{model.hub_id}: loads {plan.checkpoint if plan.source != 'toy' else 'the toy'} "
                     f"({plan.source}, {plan.dtype_name}) - {plan.reason}")
        if plan.source != "toy" and plan.checkpoint not in [e.hub_id for e in entries]:
            entries.append(entry(MODELS[plan.checkpoint]))
    return entries, notes


def is_cached(entry: ManifestEntry) -> bool:
    """True when the config and the weights (single file or shard index) are in the local cache."""
    from ..profiles import is_cached as cached

    return cached(entry.hub_id, entry.revision)


def cache_dir() -> Path:
    from ..profiles import hub_cache_dir

    return Path(hub_cache_dir())


def free_disk(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def plan_lines(entries: list[ManifestEntry], cached: dict[str, bool]) -> list[str]:
    """The table shown before downloading: sizes, lessons, revision, cache state."""
    width = max(len(e.hub_id) for e in entries)
    lines = [f"{'checkpoint':<{width}}  {'size':>9}  {'lessons':<10}  {'revision':<10}  status"]
    for e in entries:
        lines.append(f"{e.hub_id:<{width}}  {gb(e.download_bytes):>9}  {','.join(e.lessons):<10}  "
                     f"{(e.revision or 'main')[:10]:<10}  {'cached' if cached[e.hub_id] else 'to download'}")
    todo = sum(e.download_bytes for e in entries if not cached[e.hub_id])
    lines.append(f"to download: {gb(todo)} into {cache_dir()} (free: {gb(free_disk(cache_dir()))})")
    return lines


def download(entries: list[ManifestEntry], *, dry_run: bool = False, out: Callable[[str], None] = print) -> list[str]:
    """Show the plan, then fetch each checkpoint with ``snapshot_download``; returns the local folders.

    Fails fast (``DownloadError``) when offline or the hub does not answer and something is missing,
    or when the disk is too small.
    """
    from ..profiles import HUB_TIMEOUT_S, hub_offline, hub_reachable

    cached = {e.hub_id: is_cached(e) for e in entries}
    for line in plan_lines(entries, cached):
        out(line)
    if dry_run:
        return []
    missing = [e for e in entries if not cached[e.hub_id]]
    if missing:
        names = ", ".join(e.hub_id for e in missing)
        if hub_offline():
            raise DownloadError(f"HF_HUB_OFFLINE=1 is set, so nothing can be downloaded (missing: {names}). "
                                "Unset HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) on a connected machine and run again.")
        if not hub_reachable():
            raise DownloadError(f"the Hugging Face hub did not answer within {HUB_TIMEOUT_S:g} s (missing: {names}). "
                                "Check the network or proxy (HTTPS_PROXY), or use the toy profile: VLM_COURSE_PROFILE=toy.")
        need = sum(e.download_bytes for e in missing)
        if need > (free := free_disk(cache_dir())):
            raise DownloadError(f"the downloads need {gb(need)} but {cache_dir()} has {gb(free)} free; free some "
                                "space or point HF_HOME at a bigger disk.")
    elif hub_offline() or not hub_reachable():
        out("everything is already cached; nothing to download")
        return [_local_folder(e) for e in entries]
    return [_fetch(e, out) for e in entries]


def _local_folder(entry: ManifestEntry) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(entry.hub_id, revision=entry.revision, allow_patterns=list(entry.allow_patterns),
                             local_files_only=True)


def _fetch(entry: ManifestEntry, out: Callable[[str], None]) -> str:
    from huggingface_hub import snapshot_download

    out(f"fetching {entry.hub_id} ({gb(entry.download_bytes)})")
    try:
        return snapshot_download(entry.hub_id, revision=entry.revision, allow_patterns=list(entry.allow_patterns))
    except Exception as exc:  # network, auth, revision errors all end the same way for a learner
        raise DownloadError(f"downloading {entry.hub_id} failed: {type(exc).__name__}: {exc}. "
                            "Run the command again to resume (finished files are kept).") from exc
