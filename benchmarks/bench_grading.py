"""Benchmark of ``vlm-course grade``: a class of N copies of the reference solution.

Goals: 30 copies graded within 10 minutes on a 2-core machine with ``--jobs 2`` (issue 7), and at
most 12 s of CPU per submission for the two exercises (issue 18). Prints the wall-clock time, the
CPU time of all grading processes (the fork server, the trusted test processes and the sandboxed
workers), the CPU time per submission and what an otherwise idle machine with ``--cores`` cores
would need (CPU time / cores: the tests are CPU-bound). Asserts nothing.

By default it grades the class twice in one run, ``--start spawn`` (the baseline: every process
imports torch and transformers itself, as grader 2.0 did) and ``--start fork`` (processes forked
from a fork server that imported them once), alternating rounds of the two, and prints the ratio
of their CPU time per submission: a ratio measured under the same load.

Usage::

    python benchmarks/bench_grading.py                      # 30 copies each way, --jobs 2, both exercises
    python benchmarks/bench_grading.py --copies 4           # a quick estimate
    python benchmarks/bench_grading.py --start fork         # one way only
    python benchmarks/bench_grading.py --only image_search  # one exercise
    python benchmarks/bench_grading.py --cpus 0,1           # pin the run to 2 cores (Linux)

Each copy is a separate submission folder, so nothing is skipped as already graded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_CPU_S = 30.0  # CPU seconds per submission of grader 1.0 (docs/grading.md, section 5); goal: 12


def grade_class(args, root: Path, start: str, copies: int, tag: str) -> dict:
    """Grade ``copies`` copies of solutions/ with ``--start start``; CPU and wall time, scores."""
    subs = root / f"class-{tag}"
    subs.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        dest = subs / f"learner{i:02d}"
        dest.mkdir(exist_ok=True)
        for name in ("image_search.py", "chatbot.py"):
            shutil.copy(REPO / "solutions" / name, dest / name)
    out = root / f"out-{tag}"
    cmd = [sys.executable, "-m", "vlm_course.cli", "grade", *sorted(map(str, subs.iterdir())), "--out", str(out),
           "--jobs", str(args.jobs), "--force", "--quiet", "--start", start]
    for only in args.only:
        cmd += ["--only", only]
    if args.cpus:
        cmd = ["taskset", "-c", args.cpus, *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-3000:], file=sys.stderr)
    scores = []
    for results in sorted(out.glob("*/results.json")):
        data = json.loads(results.read_text())
        scores.append((data["score"], sum(t["max_score"] for t in data["tests"]), data["extra_data"]["status"]))
    return {"cpu": cpu, "wall": wall, "scores": scores, "copies": copies, "rc": run.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], help="test group(s), e.g. image_search")
    parser.add_argument("--cores", type=int, default=2, help="cores of the machine to estimate for (default 2)")
    parser.add_argument("--cpus", default=None, help="pin the grader to these CPUs, e.g. 0,1 (Linux, taskset)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the class and results here")
    parser.add_argument("--start", choices=("both", "fork", "spawn"), default="both",
                        help="both (default): the baseline spawn and fork in alternating rounds; or one of them")
    parser.add_argument("--round", type=int, default=2, help="copies per round (default 2)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-grading-")) if args.keep is None else args.keep
    starts = ["spawn", "fork"] if args.start == "both" else [args.start]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"grading {args.copies} copies of solutions/ per way ({', '.join(starts)}) with --jobs {args.jobs}, "
          f"in rounds of {args.round} ({os.cpu_count()} CPUs here, load average {load:.1f} at the start)", flush=True)
    totals = {s: {"cpu": 0.0, "wall": 0.0, "scores": [], "copies": 0, "rc": 0} for s in starts}
    done, n = 0, 0
    while done < args.copies:
        size = min(args.round, args.copies - done)
        for start in starts:  # alternate: both ways see the same load
            r = grade_class(args, root, start, size, f"{start}-{n}")
            t = totals[start]
            t["cpu"] += r["cpu"]
            t["wall"] += r["wall"]
            t["scores"] += r["scores"]
            t["copies"] += size
            t["rc"] = t["rc"] or r["rc"]
            print(f"  round {n + 1}, --start {start}: {size} submissions, {r['cpu'] / size:.1f} s CPU each, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        done += size
        n += 1
    for start, t in totals.items():
        per = t["cpu"] / max(1, t["copies"])
        full = sum(1 for s, m, st in t["scores"] if s == m and st == "ok")
        print(f"--start {start}: {t['copies']} submissions; " + "; ".join(
            f"{c} with {s:g}/{m:g} ({st})" for (s, m, st), c in sorted(Counter(t["scores"]).items())))
        print(f"  wall clock {t['wall']:.0f} s ({t['wall'] / max(1, t['copies']):.1f} s per submission); CPU of the "
              f"grading processes {t['cpu']:.0f} s, {per:.1f} s per submission (goal 12 s)")
        print(f"  estimate on an idle {args.cores}-core machine: 30 submissions in {30 * per / args.cores / 60:.1f} min "
              f"(goal 10 min); {full} of {len(t['scores'])} with every point and status ok")
    if len(totals) == 2:
        ratio = (totals["fork"]["cpu"] / max(1, totals["fork"]["copies"])) / (
            totals["spawn"]["cpu"] / max(1, totals["spawn"]["copies"]))
        print(f"CPU per submission, fork / spawn: {ratio:.2f} x (spawn is grader 2.0's way, {BASELINE_CPU_S:g} s "
              f"in docs/grading.md; goal 12 s)")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return max(t["rc"] for t in totals.values())


if __name__ == "__main__":
    sys.exit(main())
