"""Acceptance check: the LLaVA lessons survive a cached real-size LLaVA-1.5-7B on this machine.

With ``llava-hf/llava-1.5-7b-hf`` in the Hugging Face cache at its real size (random bf16 weights,
13.2 GiB, built by ``vlm_course.fakehub`` in about a minute), lessons 05, 06 and 09 run under the
default profile (``VLM_COURSE_PROFILE`` unset, so ``auto``), offline, each under nbval in a fresh
kernel. For each lesson it prints the outcome, the wall time and the peak resident memory of the
lesson's processes (sampled twice a second); first it prints what ``plan_load`` decides here for
the checkpoints those lessons load, and what the ``hub`` profile says about the 7B. Exit status 0 when every lesson passed.

Not part of ``make test`` (disk, memory, minutes). Usage::

    nice .venv/bin/python benchmarks/check_large_lessons.py                      # temporary cache, removed after
    nice .venv/bin/python benchmarks/check_large_lessons.py --hub-cache /tmp/hub7b   # built there once, kept
    nice .venv/bin/python benchmarks/check_large_lessons.py --hub-cache /tmp/hub7b --stand-in   # auto runs the 0.9B
    nice .venv/bin/python benchmarks/check_large_lessons.py --lessons 05
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LARGE = "llava-hf/llava-1.5-7b-hf"
LOADED_BY_LESSONS = (LARGE, "llava-hf/llava-v1.6-mistral-7b-hf")
NOTEBOOKS = {"05": "05_llava", "06": "06_quantization", "09": "09_exercise_chatbot"}
CHECKPOINT_GIB = 14  # 13.2 GiB of bf16 shards plus processor files, rounded up


def lesson_env(cache: Path) -> dict[str, str]:
    """The environment a learner with that cache gets: offline, default profile."""
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    env.pop("VLM_COURSE_PROFILE", None)
    return env


class PeakMemory:
    """Samples the resident memory of a process and all its children until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._every = every_s
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(self._every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_lesson(notebook: Path, env: dict[str, str], cell_timeout: int) -> tuple[bool, float, int, str]:
    """(passed, seconds, peak bytes, tail of the output) of one lesson under nbval."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(notebook), "--nbval-lax", f"--nbval-cell-timeout={cell_timeout}",
         "-p", "no:cacheprovider", "-q", "--timeout=0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    memory = PeakMemory(proc.pid)
    output, _ = proc.communicate()
    peak = memory.stop()
    return proc.returncode == 0, time.perf_counter() - start, peak, output


def print_plans(cache: Path) -> None:
    """What ``plan_load`` decides under ``auto`` for the lessons' checkpoints, in a process that sees ``cache``."""
    code = ("from vlm_course.loadplan import ModelDoesNotFitError, plan_load\n"
            f"for name in {list(LOADED_BY_LESSONS)!r}:\n"
            "    print('  ', plan_load(name))\n"
            "try:\n"
            f"    print('   hub profile:', plan_load({LARGE!r}, 'hub'))\n"
            "except ModelDoesNotFitError as exc:\n"
            "    print('   hub profile refuses before loading:', str(exc)[:300])\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=lesson_env(cache), check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", default=",".join(NOTEBOOKS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--hub-cache", help="Hugging Face cache folder to build into (if missing) and keep "
                                             "(default: a temporary one, removed afterwards)")
    parser.add_argument("--min-available-gib", type=float, default=16.0,
                        help="refuse to start with less available memory than this (default: %(default)s)")
    parser.add_argument("--stand-in", action="store_true",
                        help="also cache the laptop-size stand-in at real size (random bf16 weights, 1.7 GB), "
                             "so auto picks it instead of the toy")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds per notebook cell (default: %(default)s)")
    args = parser.parse_args(argv)
    lessons = [s.strip().zfill(2) for s in args.lessons.split(",") if s.strip()]
    unknown = [s for s in lessons if s not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown lesson(s) {unknown}; choose from {', '.join(NOTEBOOKS)}")

    import psutil

    available = psutil.virtual_memory().available / 2**30
    if available < args.min_available_gib:
        print(f"only {available:.1f} GiB of memory available (need {args.min_available_gib:g}); "
              "stop other jobs or pass --min-available-gib", file=sys.stderr)
        return 2
    cache = Path(args.hub_cache) if args.hub_cache else Path(tempfile.mkdtemp(prefix="check-large-hub-"))
    cache.mkdir(parents=True, exist_ok=True)
    try:
        from vlm_course.catalogue import course_model
        from vlm_course.fakehub import build_fake_hub, repo_folder

        wanted = [LARGE] + ([course_model(LARGE).stand_in] if args.stand_in else [])
        missing = [m for m in wanted if not (repo_folder(cache, m) / "refs" / "main").is_file()]
        if LARGE in missing and shutil.disk_usage(cache).free / 2**30 < CHECKPOINT_GIB + 2:
            print(f"only {shutil.disk_usage(cache).free / 2**30:.1f} GiB free in {cache}; the checkpoint needs "
                  f"about {CHECKPOINT_GIB} GiB", file=sys.stderr)
            return 2
        for name in missing:
            import torch

            start = time.perf_counter()
            build_fake_hub([name], cache, dtype=torch.bfloat16)
            print(f"built real-size {name} (random bf16 weights) in {cache} in {time.perf_counter() - start:.0f} s")
        size = sum(f.stat().st_size for f in (repo_folder(cache, LARGE) / "blobs").iterdir())
        print(f"{LARGE} in the cache: {size / 2**30:.1f} GiB; memory available {available:.1f} GiB "
              f"of {psutil.virtual_memory().total / 2**30:.1f} GiB")
        print("plan_load under the default profile here:")
        print_plans(cache)
        results = []
        for lesson in lessons:
            notebook = REPO / "notebooks" / f"{NOTEBOOKS[lesson]}.ipynb"
            passed, seconds, peak, output = run_lesson(notebook, lesson_env(cache), args.cell_timeout)
            results.append(passed)
            died = "kernel died" in output.lower()
            print(f"lesson {lesson}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s, peak memory "
                  f"{peak / 2**30:.1f} GiB{', the kernel died' if died else ''}")
            if not passed:
                print(output[-4000:])
        return 0 if all(results) else 1
    finally:
        if not args.hub_cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
