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


def _check_machine(report: Report) -> tuple[int, int]:
    import psutil

    from .device import describe_device, pick_device

    device = pick_device()
    report.add("device", OK, describe_device(device))
    gpu_bytes = 0
    if device.type == "cuda":
        import torch

        gpu_bytes = torch.cuda.get_device_properties(device).total_memory
    ram = psutil.virtual_memory()
    report.add("RAM", OK if ram.total >= 4 * 2**30 else WARN,
               f"{ram.total / 2**30:.1f} GiB total, {ram.available / 2**30:.1f} GiB available",
               "" if ram.total >= 4 * 2**30 else "close other programs; the toy profile needs about 2 GiB")
    return ram.total, gpu_bytes


def _check_disk_and_cache(report: Report) -> None:
    from . import profiles

    cache = Path(profiles.hub_cache_dir())
    probe = cache if cache.exists() else Path.home()
    free = shutil.disk_usage(probe).free
    status = OK if free >= 2 * 2**30 else WARN
    report.add("free disk", status, f"{free / 2**30:.1f} GiB free at {probe}",
               "" if status == OK else "free some space: the real checkpoints need 0.6-16 GB each")
    cached = [hub_id for hub_id in profiles.REGISTRY if profiles.is_cached(hub_id)]
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
    if chosen != "auto":
        report.add("profile", OK, f"'{chosen}' (from ${profiles.PROFILE_ENV})")
        return
    if profiles.hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif profiles.hub_reachable():
        report.add("profile", OK, "auto -> 'hub' (the hub answers; checkpoints download on first use)")
        return
    else:
        why = f"the hub did not answer within {profiles.HUB_TIMEOUT_S:g} s"
    report.add("profile", OK, f"auto -> 'toy' for models not cached ({why}); set VLM_COURSE_PROFILE=hub|toy to choose")


def _check_hub_lessons(report: Report, ram: int, gpu: int) -> None:
    from .sizes import lessons_runnable

    for lesson, fit in lessons_runnable(ram, gpu).items():
        report.add(f"lesson {lesson} (hub)", OK if fit.ok else WARN, fit.why,
                   "" if fit.ok else "use the toy profile for this lesson (VLM_COURSE_PROFILE=toy)")


def collect() -> Report:
    """Run every check and return the report (prints nothing)."""
    report = Report()
    _check_versions(report)
    ram, gpu = _check_machine(report)
    _check_disk_and_cache(report)
    _check_toy_and_profile(report)
    _check_hub_lessons(report, ram, gpu)
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
