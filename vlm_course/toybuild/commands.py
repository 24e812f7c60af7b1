"""``vlm-course build-toy-models`` and ``vlm-course eval-toy-models``."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from .. import toy
from . import DEPENDS_ON, build_order, builder


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--only", action="append", choices=toy.TOY_NAMES, metavar="NAME",
                        help=f"only this model (repeatable); one of {', '.join(toy.TOY_NAMES)}")
    if command == "build-toy-models":
        parser.add_argument("--out", type=Path, default=toy.TOY_MODELS_DIR,
                            help="where to write the checkpoint folders (default: the package's toy_models/)")
        parser.add_argument("--smoke", action="store_true", help="a few training steps only, to prove the builder works")
    else:
        parser.add_argument("--dir", type=Path, default=toy.TOY_MODELS_DIR, help="folder holding the checkpoints")
        parser.add_argument("-n", type=int, default=200, help="evaluation scenes per metric")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _dep_dir(dep: str, out: Path) -> Path:
    built = out / dep
    if (built / "config.json").is_file():
        return built
    return toy.model_path(dep)


def build_models(names: list[str], out: Path, smoke: bool = False) -> dict[str, dict]:
    """Build ``names`` (with what they depend on taken from ``out`` or the shipped checkpoints)."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    for name in build_order(names):
        start = time.perf_counter()
        deps = {d: _dep_dir(d, out) for d in DEPENDS_ON.get(name, ())}
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
            info = builder(name).build(name, Path(tmp), smoke=smoke, deps=deps)
            final = out / name
            if final.exists():
                shutil.rmtree(final)
            Path(tmp).rename(final)
            Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty folder
        info["seconds"] = round(time.perf_counter() - start, 1)
        report[name] = info
        print(f"built {name} in {info['seconds']:.0f} s -> {final}")
    return report


def evaluate_models(names: list[str], folder: Path, n: int) -> dict[str, dict[str, float]]:
    return {name: builder(name).evaluate(name, folder / name, n=n) for name in names}


def run(args: argparse.Namespace) -> int:
    names = args.only or list(toy.TOY_NAMES)
    if args.command == "build-toy-models":
        build_models(names, args.out, smoke=args.smoke)
        return 0
    results = evaluate_models(names, args.dir, args.n)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'model':<16} {'metric':<40} {'score':>8}")
    for name, scores in results.items():
        for metric, value in scores.items():
            shown = f"{value:.1%}" if isinstance(value, float) and value <= 1 else str(value)
            print(f"{name:<16} {metric:<40} {shown:>8}")
    return 0
