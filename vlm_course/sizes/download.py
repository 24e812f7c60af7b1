"""Prefetch the hub checkpoints a lesson needs into the Hugging Face cache (``vlm-course download``).

The checkpoints come from the catalogue (``vlm_course.catalogue``): hub id, lessons, download size,
stored dtype and pinned ``revision``. After a download a lab can run with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..catalogue import normalize_lesson
from .fit import gb


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


def load_manifest() -> list[ManifestEntry]:
    """One entry per catalogue checkpoint (``vlm_course.catalogue.MODELS``)."""
    from ..catalogue import ALLOW_PATTERNS, MODELS

    return [ManifestEntry(m.hub_id, m.lessons, m.download_bytes, m.stored_dtype, m.revision, ALLOW_PATTERNS)
            for m in MODELS.values()]


def select(manifest: list[ManifestEntry], lesson: str | int | None = None, everything: bool = False) -> list[ManifestEntry]:
    """The entries of one lesson, or all of them."""
    if everything:
        return list(manifest)
    if lesson is None:
        raise DownloadError("say what to download: --lesson N (e.g. --lesson 5) or --all")
    wanted = normalize_lesson(lesson)
    chosen = [m for m in manifest if wanted in m.lessons]
    if not chosen:
        known = sorted({n for m in manifest for n in m.lessons})
        raise DownloadError(f"lesson {wanted} loads no hub checkpoint; lessons with checkpoints: {', '.join(known)}")
    return chosen


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
