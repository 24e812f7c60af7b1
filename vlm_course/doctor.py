"""``vlm-course doctor``: can this machine run the course, and in which profile?"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    @property
    def can_run(self) -> bool:
        return all(c.status != FAIL for c in self.checks)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_versions(report: Report) -> None:
    py = platform.python_version()
    ok_py = sys.version_info >= (3, 10)
    report.add("python", OK if ok_py else FAIL, py, "" if ok_py else "install Python 3.10 or newer")
    for dist, fix in (
        ("torch", "pip install 'torch>=2.4'"),
        ("transformers", "pip install -U 'transformers>=5,<6'"),
    ):
        version = _version(dist)
        if version is None:
            report.add(dist, FAIL, "not installed", fix)
        elif dist == "transformers" and int(version.split(".")[0]) != 5:
            report.add(dist, FAIL, f"{version} (the course teaches transformers 5.x)", fix)
        else:
            report.add(dist, OK, version)
    bnb = _version("bitsandbytes")
    report.add(
        "bitsandbytes", OK if bnb else WARN, bnb or "not installed (only lesson 06, 4-bit quantization, needs it)",
        "" if bnb else "pip install bitsandbytes (where your platform has wheels)",
    )


def _check_machine(report: Report) -> None:
    import psutil

    from .device import describe_device, pick_device

    device = pick_device()
    report.add("device", OK, describe_device(device))
    ram = psutil.virtual_memory()
    report.add("RAM", OK if ram.total >= 4 * 2**30 else WARN,
               f"{ram.total / 2**30:.1f} GiB total, {ram.available / 2**30:.1f} GiB available",
               "" if ram.total >= 4 * 2**30 else "close other programs; the toy profile needs about 2 GiB")


def _check_disk_and_cache(report: Report) -> None:
    from . import profiles

    cache = Path(profiles.hub_cache_dir())
    probe = cache if cache.exists() else Path.home()
    free = shutil.disk_usage(probe).free
    status = OK if free >= 2 * 2**30 else WARN
    report.add("free disk", status, f"{free / 2**30:.1f} GiB free at {probe}",
               "" if status == OK else "free some space: the real checkpoints need 0.6-16 GB each")
    from .catalogue import MODELS

    cached = [m.hub_id for m in MODELS.values() if profiles.is_cached(m.hub_id, m.revision)]
    detail = f"{cache}; course checkpoints cached: {', '.join(cached) if cached else 'none'}"
    report.add("HF cache", OK, detail)


def _check_toy_and_profile(report: Report) -> None:
    from . import profiles, toy

    present = toy.available()
    missing = [n for n in toy.TOY_NAMES if n not in present]
    if missing:
        report.add("toy checkpoints", FAIL, f"missing: {', '.join(missing)}",
                   "reinstall the course (pip install -e .) or run: vlm-course build-toy-models")
    else:
        report.add("toy checkpoints", OK, f"all {len(present)} present in {toy.TOY_MODELS_DIR}")
    try:
        chosen = profiles.current_profile()
    except profiles.ProfileError as exc:
        report.add("profile", FAIL, str(exc), "set VLM_COURSE_PROFILE to auto, hub or toy")
        return
    if chosen == "hub" and (profiles.hub_offline() or not profiles.hub_reachable()):
        from .catalogue import MODELS

        why = "HF_HUB_OFFLINE is set" if profiles.hub_offline() else "the hub cannot be reached"
        if not any(profiles.is_cached(m.hub_id, m.revision) for m in MODELS.values()):
            report.add("profile", FAIL, f"'hub' (from ${profiles.PROFILE_ENV}), but {why} and no course checkpoint "
                       "is in the Hugging Face cache, so no lesson can load its model",
                       "connect and run `vlm-course download --lesson N` first, or use the default profile "
                       f"(unset {profiles.PROFILE_ENV}) or {profiles.PROFILE_ENV}=toy")
            return
        report.add("profile", WARN, f"'hub' (from ${profiles.PROFILE_ENV}); {why}, so only cached checkpoints load")
        return
    if chosen != "auto":
        report.add("profile", OK, f"'{chosen}' (from ${profiles.PROFILE_ENV})")
        return
    if profiles.hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif profiles.hub_reachable():
        from .loadplan import AUTO_DOWNLOAD_LIMIT, gb

        report.add("profile", OK, "auto: the real checkpoint where it fits this machine and is cached or at most "
                   f"{gb(AUTO_DOWNLOAD_LIMIT)} to download, else a laptop-size one or the toy (per lesson below); "
                   "set VLM_COURSE_PROFILE=hub|toy to choose")
        return
    else:
        why = f"the hub did not answer within {profiles.HUB_TIMEOUT_S:g} s"
    report.add("profile", OK, f"auto -> 'toy' for models not cached ({why}); set VLM_COURSE_PROFILE=hub|toy to choose")


def _plan_text(plan) -> str:
    from .loadplan import gb
    from .sizes.fit import gib

    name = f"toy {Path(plan.checkpoint).name}" if plan.source == "toy" else plan.checkpoint
    download = f", download {gb(plan.download_bytes)}" if plan.download_bytes else ""
    return f"{name} ({plan.dtype_name}, {gib(plan.memory_bytes)}{download})"


def _check_lessons(report: Report, machine) -> None:
    """Per lesson: what the current profile loads here (checkpoint, dtype, memory, download)."""
    from . import profiles
    from .catalogue import lessons
    from .loadplan import ModelDoesNotFitError, plan_load

    try:
        profile = profiles.current_profile()
    except profiles.ProfileError:
        return  # reported by the profile check
    for lesson, models in lessons().items():
        loads, problems, too_big = [], [], False
        for model in models:
            try:
                loads.append(_plan_text(plan_load(model, profile, machine)))
            except (profiles.HubUnavailableError, ModelDoesNotFitError) as exc:
                problems.append(str(exc).splitlines()[0])
                too_big = too_big or isinstance(exc, ModelDoesNotFitError)
        if problems:
            fallback = (f"use the default profile (unset {profiles.PROFILE_ENV}), which falls back to models "
                        "this machine can run")
            fix = (f"a download cannot help: {fallback}, or a machine with more memory (see docs/hardware.md)"
                   if too_big else f"run `vlm-course download --lesson {int(lesson)}` while online, or {fallback}")
            report.add(f"lesson {lesson}", FAIL, "; ".join(loads + problems), fix)
        else:
            report.add(f"lesson {lesson}", OK, f"{profile}: " + "; ".join(loads))


def collect() -> Report:
    """Run every check and return the report (prints nothing)."""
    report = Report()
    _check_versions(report)
    _check_machine(report)
    _check_disk_and_cache(report)
    _check_toy_and_profile(report)
    from .sizes.fit import Machine

    _check_lessons(report, Machine.detect())
    return report


def render(report: Report) -> str:
    width = max(len(c.name) for c in report.checks)
    lines = [f"[{c.status:>4}] {c.name:<{width}}  {c.detail}" + (f"\n       fix: {c.fix}" if c.fix else "")
             for c in report.checks]
    verdict = "The course can run on this machine." if report.can_run else "Fix the FAIL lines above to run the course."
    return "\n".join(lines + ["", verdict])


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    pass


def run(args: argparse.Namespace | None = None) -> int:
    report = collect()
    print(render(report))
    return 0 if report.can_run else 1
