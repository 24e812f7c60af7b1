"""``vlm-course estimate``, ``bench`` and ``download``: see ``configure`` for the options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .memory import DTYPES, FLOAT_DTYPES

SEARCH_BENCH = "bench_search.py"


def _image_size(text: str) -> tuple[int, int]:
    """``"640x480"`` (width x height) -> (480, 640) as (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 640x480 (width x height), not {text!r}") from None
    return h, w


def _prompt_options(parser: argparse.ArgumentParser, new_tokens: int) -> None:
    parser.add_argument("--prompt-tokens", type=int, default=32, help="text tokens in the prompt (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=new_tokens, help="tokens to generate (default: %(default)s)")
    parser.add_argument("--image-size", type=_image_size, default=(480, 640), metavar="WxH",
                        help="image size; matters for LLaVA-NeXT's any-res tiles (default: 640x480)")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "estimate":
        parser.add_argument("models", nargs="*", metavar="MODEL",
                            help="hub ids or toy names (default: every checkpoint the course names)")
        parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES), help="columns to show")
        _prompt_options(parser, 64)
    elif command == "bench":
        parser.epilog = ("Image search instead: vlm-course bench search [--benchmarks DIR] [-- OPTIONS of "
                         "benchmarks/bench_search.py], e.g. vlm-course bench search -- --sizes 10000,100000")
        parser.add_argument("model", metavar="MODEL", help="hub id or toy name of a course checkpoint, or 'search'")
        parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"), metavar="DIR",
                            help="the course's benchmarks folder, for 'search' (default: ./benchmarks)")
        parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
        parser.add_argument("--random-weights", action="store_true",
                            help="build the real-size architecture with random weights (nothing is downloaded)")
        parser.add_argument("--seconds", type=float, default=20.0, help="measuring time (default: %(default)s)")
        parser.add_argument("--dtype", choices=list(FLOAT_DTYPES), help="default: fp32 on CPU, bf16/fp16 on GPU")
        parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
        parser.add_argument("--batch", type=int, default=8, help="images per batch for encoders (default: %(default)s)")
        _prompt_options(parser, 32)
    elif command == "download":
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--lesson", help="lesson number, e.g. 5 or 05: what that lesson loads on this machine "
                                            "(its load plans; big downloads count as consented)")
        which.add_argument("--all", action="store_true", help="every checkpoint of the course, whether it fits or not")
        parser.add_argument("--dry-run", action="store_true", help="show sizes and cache state, download nothing")
    else:
        raise ValueError(f"vlm_course.sizes.commands has no command {command!r}")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    return {"estimate": _estimate, "bench": _bench, "download": _download}[args.command](args)


def _estimate(args: argparse.Namespace) -> int:
    from ..catalogue import UnknownModelError, course_model
    from .table import render, rows

    try:
        models = [course_model(m) for m in args.models] or None
    except UnknownModelError as exc:
        return _fail(str(exc))
    prompt = dict(prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, image_size=args.image_size)
    print(render(rows(models, tuple(args.dtype), **prompt), **prompt))
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.model == "search":
        return _bench_search(args.benchmarks, args.extra)
    if args.extra:
        return _fail(f"unexpected arguments {' '.join(args.extra)!r}")
    if not args.random_weights:
        return _fail("bench measures the real-size architecture with random weights only; add --random-weights "
                     "(nothing is downloaded)")
    from ..catalogue import UnknownModelError, course_model
    from .bench import BenchRefused, bench

    try:
        result = bench(course_model(args.model), seconds=args.seconds, dtype=args.dtype, device=args.device, batch=args.batch,
                       prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, image_size=args.image_size,
                       announce=lambda text: print(text, flush=True))
    except (UnknownModelError, BenchRefused, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    print(result.summary())
    return 0


def _bench_search(folder: Path, extra: list[str]) -> int:
    script = folder / SEARCH_BENCH
    if not script.is_file():
        return _fail(f"{script} does not exist: run this from the course repository's root, or pass "
                     "--benchmarks DIR (the folder of the course's benchmarks)")
    from vlm_course.submission import import_file

    return int(import_file(script, "bench_search").main(extra) or 0)


def _download(args: argparse.Namespace) -> int:
    from .download import DownloadError, download, lesson_plan, load_manifest

    try:
        if args.all:
            entries = load_manifest()
        else:
            entries, notes = lesson_plan(args.lesson)
            print(f"lesson {args.lesson} on this machine:")
            for note in notes:
                print(f"  {note}")
            if not entries:
                print("nothing to download: this lesson runs the toy checkpoints here")
                return 0
        download(entries, dry_run=args.dry_run)
    except DownloadError as exc:
        return _fail(str(exc))
    return 0
