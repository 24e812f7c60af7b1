"""``vlm-course build-toy-models`` and ``vlm-course eval-toy-models``."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from .. import shapesworld as sw
from .. import toy
from . import DEPENDS_ON, bars, build_order, builder, ready_to_build
from .card import update_scores
from .data import on_every_sampler, sampler_suffix


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--only", action="append", choices=toy.TOY_NAMES, metavar="NAME",
                        help=f"only this model (repeatable); one of {', '.join(toy.TOY_NAMES)}")
    if command == "build-toy-models":
        parser.add_argument("--out", type=Path, default=toy.TOY_MODELS_DIR,
                            help="where to write the checkpoint folders (default: the package's toy_models/)")
        parser.add_argument("--smoke", action="store_true", help="a few training steps only, to prove the builder works")
        parser.add_argument("--jobs", type=int, default=1, metavar="N",
                            help="build up to N models at once, each in its own single-threaded process "
                                 "(a model starts once what it starts from is built); use the number of CPU cores")
    else:
        parser.add_argument("--dir", type=Path, default=toy.TOY_MODELS_DIR, help="folder holding the checkpoints")
        parser.add_argument("-n", type=int, default=200, help="evaluation scenes per metric")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--update-cards", action="store_true",
                            help="write the measured scores into each checkpoint's model card (README.md)")


def _dep_dir(dep: str, out: Path) -> Path:
    built = out / dep
    if (built / "config.json").is_file():
        return built
    return toy.model_path(dep)


def build_one(name: str, out: Path, smoke: bool = False) -> dict:
    """Build ``name`` into ``out / name`` (what it depends on is taken from ``out`` or the shipped checkpoints).

    The checkpoint is written to a temporary folder first and renamed into place when complete, so
    an interrupted build never leaves a half-written checkpoint behind.
    """
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    deps = {d: _dep_dir(d, out) for d in DEPENDS_ON.get(name, ())}
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
        info = builder(name).build(name, Path(tmp), smoke=smoke, deps=deps)
        final = out / name
        if final.exists():
            shutil.rmtree(final)
        _as_plain_folder(Path(tmp))
        Path(tmp).rename(final)
        Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty folder
    info["seconds"] = round(time.perf_counter() - start, 1)
    return info


def _as_plain_folder(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (owner-only, 0700) the permissions of a folder made with ``mkdir``, so
    other users (the grader's sandbox uid, a shared install) can read the checkpoint."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def build_models(names: list[str], out: Path, smoke: bool = False, jobs: int = 1) -> dict[str, dict]:
    """Build ``names`` in dependency order; with ``jobs > 1`` independent models build in parallel
    (one single-threaded worker process each, logs in ``out/.logs/NAME.log``)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    order = build_order(names)
    if jobs == 1:
        report: dict[str, dict] = {}
        for name in order:
            report[name] = build_one(name, out, smoke)
            print(f"built {name} in {report[name]['seconds']:.0f} s -> {out / name}")
        return report
    return _build_parallel(order, out, smoke, jobs)


def _worker(name: str, out: str, smoke: bool) -> dict:
    """Child process: one thread (parallel builds share the cores), output to the model's log file."""
    import torch

    torch.set_num_threads(1)
    log = Path(out) / ".logs" / f"{name}.log"
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            return build_one(name, Path(out), smoke)
        except BaseException:
            traceback.print_exc()
            raise


def _build_parallel(order: list[str], out: Path, smoke: bool, jobs: int) -> dict[str, dict]:
    (out / ".logs").mkdir(exist_ok=True)
    pending = list(order)
    done: set[str] = set()
    report: dict[str, dict] = {}
    running: dict[Future, str] = {}
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool, \
            tqdm(total=len(order), desc="toy models", unit="model") as bar:
        while pending or running:
            for name in ready_to_build(pending, done, order)[: jobs - len(running)]:
                pending.remove(name)
                running[pool.submit(_worker, name, str(out), smoke)] = name
            bar.set_postfix_str("building " + ", ".join(sorted(running.values())))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    report[name] = future.result()
                except Exception as exc:
                    for other in running:
                        other.cancel()
                    raise RuntimeError(f"building {name} failed ({exc}); see {out / '.logs' / (name + '.log')}") from exc
                done.add(name)
                bar.update()
                bar.write(f"built {name} in {report[name]['seconds']:.0f} s -> {out / name} "
                          f"({time.perf_counter() - start:.0f} s since the start)")
    return report


def evaluate_models(names: list[str], folder: Path, n: int) -> dict[str, dict[str, float]]:
    """Every metric of every model in ``names``, on ``n`` fresh scenes of each spec sampler."""
    return {name: on_every_sampler(builder(name).evaluate, name, folder / name, n) for name in names}


def _shown(value) -> str:
    return f"{value:.1%}" if isinstance(value, float) and value <= 1 else str(value)


def print_report(results: dict[str, dict[str, float]]) -> int:
    """Print every metric (one column per sampler), then every bar with met / NOT MET; return how many
    bars are not met."""
    samplers = list(sw.SAMPLERS)
    print(f"{'model':<16} {'metric':<56} " + " ".join(f"{s:>8}" for s in samplers))
    for name, scores in results.items():
        base = [k for k in scores if not any(k.endswith(sampler_suffix(s)) for s in samplers[1:])]
        for metric in base:
            cells = [scores.get(metric + sampler_suffix(s)) for s in samplers]
            print(f"{name:<16} {metric:<56} " + " ".join(f"{_shown(c) if c is not None else '-':>8}" for c in cells))
    print(f"\n{'model':<16} {'bar':<40} {'sampler':<8} {'need':>6} {'measured':>9}")
    unmet = 0
    for name, scores in results.items():
        for row in bars.report(name, scores):
            unmet += not row["met"]
            measured = _shown(row["score"]) if row["score"] is not None else "-"
            print(f"{name:<16} {row['task']:<40} {row['sampler']:<8} {row['bar']:>6.0%} {measured:>9}  "
                  + ("met" if row["met"] else "NOT MET"))
    print(f"\n{unmet} bar(s) not met" if unmet else "\nevery bar met")
    return unmet


def run(args: argparse.Namespace) -> int:
    names = args.only or list(toy.TOY_NAMES)
    if args.command == "build-toy-models":
        start = time.perf_counter()
        report = build_models(names, args.out, smoke=args.smoke, jobs=args.jobs)
        total = time.perf_counter() - start
        print(f"built {len(report)} model(s) in {total / 60:.1f} min "
              f"({os.cpu_count()} CPU cores, --jobs {args.jobs}): "
              + ", ".join(f"{n} {info['seconds']:.0f} s" for n, info in report.items()))
        return 0
    results = evaluate_models(names, args.dir, args.n)
    if args.update_cards:
        for name, scores in results.items():
            print(f"updated {update_scores(args.dir / name, scores)}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({name: {"scores": scores, "bars": bars.report(name, scores)} for name, scores in results.items()},
                         indent=2))
        return int(any(not row["met"] for name, s in results.items() for row in bars.report(name, s)))
    return int(print_report(results) > 0)
