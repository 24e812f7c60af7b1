"""Benchmark of ``vlm-course grade``: a class of N copies of the reference solution.

Goal (issue 7): 30 copies graded within 10 minutes on a 2-core machine with ``--jobs 2``.
Prints the wall-clock time, the CPU time of all grading processes (the trusted test processes and
the sandboxed workers), the CPU time per submission and what an otherwise idle machine with
``--cores`` cores would need (CPU time / cores: the tests are CPU-bound). Asserts nothing.

Usage::

    python benchmarks/bench_grading.py                      # 30 copies, --jobs 2, both exercises
    python benchmarks/bench_grading.py --copies 4           # a quick estimate
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], help="test group(s), e.g. image_search")
    parser.add_argument("--cores", type=int, default=2, help="cores of the machine to estimate for (default 2)")
    parser.add_argument("--cpus", default=None, help="pin the grader to these CPUs, e.g. 0,1 (Linux, taskset)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the class and results here")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-grading-")) if args.keep is None else args.keep
    subs = root / "class"
    subs.mkdir(parents=True, exist_ok=True)
    for i in range(args.copies):
        dest = subs / f"learner{i:02d}"
        dest.mkdir(exist_ok=True)
        for name in ("image_search.py", "chatbot.py"):
            shutil.copy(REPO / "solutions" / name, dest / name)
    cmd = [sys.executable, "-m", "vlm_course.cli", "grade", *sorted(map(str, subs.iterdir())), "--out", str(root / "out"),
           "--jobs", str(args.jobs), "--force", "--quiet"]
    for only in args.only:
        cmd += ["--only", only]
    if args.cpus:
        cmd = ["taskset", "-c", args.cpus, *cmd]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"grading {args.copies} copies of solutions/ with --jobs {args.jobs} "
          f"({os.cpu_count()} CPUs here, load average {load:.1f} at the start)", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(run.stdout[-3000:])
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
    scores = []
    for results in sorted((root / "out").glob("*/results.json")):
        data = json.loads(results.read_text())
        scores.append((data["score"], sum(t["max_score"] for t in data["tests"]), data["extra_data"]["status"]))
    full = sum(1 for s, m, st in scores if s == m and st == "ok")
    for (s, m, st), n in sorted(Counter(scores).items()):
        print(f"{n} submission(s): {s:g} / {m:g} points, status {st}")
    per = cpu / max(1, args.copies)
    print(f"wall clock: {wall:.0f} s ({wall / 60:.1f} min) for {args.copies} submissions, {wall / max(1, args.copies):.1f} s each")
    print(f"CPU time of the grading processes: {cpu:.0f} s, {per:.1f} s per submission "
          f"({per / BASELINE_CPU_S:.2f} x the {BASELINE_CPU_S:g} s of grader 1.0; goal 12 s = 0.40 x)")
    print(f"estimate on an idle {args.cores}-core machine: {cpu / args.cores / 60:.1f} min "
          f"(30 submissions: {30 * per / args.cores / 60:.1f} min; goal 10 min)")
    print(f"{len(scores)} results, {full} with every point and status ok; load average now {os.getloadavg()[0]:.1f}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
