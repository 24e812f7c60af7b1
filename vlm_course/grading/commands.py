"""``vlm-course grade SUBMISSION [SUBMISSION ...]``: grade submissions in a sandbox, write the gradebook.

Each SUBMISSION is a folder or a .zip holding ``image_search.py`` and/or ``chatbot.py``; a class is
``vlm-course grade submissions/*``. Per submission: ``<out>/<name>/results.json`` (Gradescope
format); for the run: ``<out>/gradebook.csv`` and a summary table. See docs/grading.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from vlm_course.grading import report, runner, sandbox


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("submissions", nargs="*", metavar="SUBMISSION", type=Path,
                        help="a folder or .zip with image_search.py and/or chatbot.py (several: a class)")
    parser.add_argument("--tests", type=Path, default=runner.DEFAULT_TESTS, metavar="DIR",
                        help="folder of test_*.py files with points markers (default: the course's exercise tests in vlm_course/exercise_tests; "
                             "give your private hidden tests here)")
    parser.add_argument("--out", type=Path, default=Path("grades"), metavar="DIR",
                        help="where results.json files and gradebook.csv go (default: ./grades)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="submissions graded in parallel (default 1)")
    parser.add_argument("--only", action="append", default=[], metavar="EXERCISE",
                        help="grade only these test groups, e.g. --only image_search (repeatable or comma-separated)")
    parser.add_argument("--force", action="store_true", help="grade again even where the hashes match earlier results")
    parser.add_argument("--timeout", type=float, default=1200, metavar="S", help="wall-clock seconds per submission (default 1200)")
    parser.add_argument("--call-timeout", type=float, default=300, metavar="S",
                        help="seconds one call into the learner's code may take, import included (default 300)")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of a worker (default 4096)")
    parser.add_argument("--cpu-s", type=int, default=None, help="CPU seconds of a worker (default: 2 x --timeout)")
    parser.add_argument("--nproc", type=int, default=64, help="processes and threads of a worker (default 64)")
    parser.add_argument("--fsize-mb", type=int, default=64, help="largest file a worker may write (default 64)")
    parser.add_argument("--output-kb", type=int, default=64, help="worker output kept per module (default 64)")
    parser.add_argument("--scratch-mb", type=int, default=1024,
                        help="size of a submission's scratch tmpfs: worker folders and the tests' tmp_path (default 1024)")
    parser.add_argument("--sandbox", choices=sandbox.MODES, default="auto",
                        help="namespace (root + unshare), process (weaker fallback) or auto (default)")
    parser.add_argument("--visibility", default="visible", choices=("visible", "hidden", "after_due_date", "after_published"),
                        help="Gradescope visibility of the test results (default visible)")
    parser.add_argument("--show-failures", action="store_true",
                        help="show learners the full failure messages of --tests too (default: only for the course's "
                             "own tests; hidden tests show the test's description and what the learner's code raised)")
    parser.add_argument("--start", choices=("fork", "spawn"), default="fork",
                        help="fork (default, Linux): the test processes and workers are forked from a process that "
                             "imported torch and transformers once per run, before any learner code; spawn: each "
                             "starts a fresh interpreter (slower; for comparison)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--export-gradescope", type=Path, default=None, metavar="ZIP",
                        help="write a Gradescope autograder bundle (setup.sh, run_autograder, the tests and these "
                             "options) instead of grading; see docs/grading.md")


def unique_names(sources: list[Path]) -> list[str]:
    """A results folder name per submission; never the same twice (ignoring case), whatever the files are called."""
    names: list[str] = []
    taken: set[str] = set()
    for src in sources:
        base = name = runner.submission_name(src)
        n = 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.casefold())
        names.append(name)
    return names


def options_from(args: argparse.Namespace) -> runner.GradeOptions:
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    limits = sandbox.Limits(
        cpu_s=int(args.cpu_s or 2 * args.timeout), memory_mb=args.memory_mb, nproc=args.nproc,
        fsize_mb=args.fsize_mb, output_kb=args.output_kb, threads=threads,
    )
    only = tuple(sorted({o.strip().removeprefix("test_") for arg in args.only for o in arg.split(",") if o.strip()}))
    return runner.GradeOptions(
        tests_dir=args.tests.resolve(), out_dir=args.out.resolve(), only=only, timeout=args.timeout,
        call_timeout=args.call_timeout, limits=limits, mode=args.sandbox, force=args.force,
        visibility=args.visibility, hidden=sorted({s.resolve().parent for s in args.submissions}),
        scratch_mb=args.scratch_mb,
        withhold=args.tests.resolve() != runner.DEFAULT_TESTS.resolve() and not args.show_failures,
        start=args.start,
    )


def bundle_args(args: argparse.Namespace) -> list[str]:
    """The grading options of this command line, as ``vlm-course grade`` arguments for the autograder."""
    out = ["--timeout", args.timeout, "--call-timeout", args.call_timeout, "--memory-mb", args.memory_mb,
           "--nproc", args.nproc, "--fsize-mb", args.fsize_mb, "--output-kb", args.output_kb,
           "--scratch-mb", args.scratch_mb, "--sandbox", args.sandbox, "--visibility", args.visibility, "--start", args.start]
    if args.cpu_s:
        out += ["--cpu-s", args.cpu_s]
    for only in args.only:
        out += ["--only", only]
    if args.show_failures or args.tests.resolve() == runner.DEFAULT_TESTS.resolve():
        out.append("--show-failures")  # the course's own tests stay as open as when learners self-check
    return [str(x) for x in out]


def run(args: argparse.Namespace) -> int:
    if not args.tests.is_dir():
        print(f"vlm-course grade: the tests folder {args.tests} does not exist; pass --tests DIR", file=sys.stderr)
        return 2
    if args.export_gradescope is not None:
        from vlm_course.grading import gradescope

        try:
            path = gradescope.export(args.export_gradescope, args.tests.resolve(), bundle_args(args))
        except (OSError, ValueError) as exc:
            print(f"vlm-course grade: cannot export the autograder: {exc}", file=sys.stderr)
            return 2
        print(f"autograder bundle: {path} (upload it as the autograder of a Gradescope programming assignment)")
        return 0
    if not args.submissions:
        print("vlm-course grade: give the submissions to grade (folders or .zip files), or --export-gradescope ZIP",
              file=sys.stderr)
        return 2
    try:
        mode = sandbox.resolve_mode(args.sandbox)
    except sandbox.SandboxUnavailable as exc:
        print(f"vlm-course grade: {exc}", file=sys.stderr)
        return 2
    options = options_from(args)
    if not runner.test_files(options):
        print(f"vlm-course grade: no test_*.py files to run in {options.tests_dir}"
              f"{' for ' + ', '.join(options.only) if options.only else ''}", file=sys.stderr)
        return 2
    if mode == "process":
        why = sandbox.namespace_support()[1] if args.sandbox == "auto" else "--sandbox process"
        lacks = "".join(f"\n  - {item}" for item in sandbox.process_lacks())
        print(f"vlm-course grade: weaker sandbox (process mode: {why}). Run it only in a throw-away container or VM "
              f"holding nothing but the hidden tests and the submissions (docs/grading.md, section 4). It lacks:{lacks}",
              file=sys.stderr)
    sandbox.become_subreaper()
    sources = [Path(s) for s in args.submissions]
    names = unique_names(sources)
    tests_digest = runner.tests_sha256(options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    slots = list(range(max(1, args.jobs)))
    lock = threading.Lock()

    def job(i: int) -> dict:
        with lock:
            slot = slots.pop()
        try:
            return runner.grade(sources[i], options, name=names[i], slot=slot, tests_digest=tests_digest)
        except Exception as exc:  # noqa: BLE001 - grade() should not raise; the class run finishes regardless
            meta = {"name": names[i], "source": report.printable(os.fsdecode(sources[i]))}
            return report.error_results(meta, report.printable(f"the grader failed: {type(exc).__name__}: {exc}"), 0.0)
        finally:
            with lock:
                slots.append(slot)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(sources), desc="grading", unit="submission", disable=args.quiet, file=sys.stderr)
    gradebook = options.out_dir / "gradebook.csv"
    try:
        with runner.class_server(options), ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(job, i): i for i in range(len(sources))}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                extra = results[i].get("extra_data", {})
                bar.set_postfix_str(f"{names[i]}: {report._fmt(results[i].get('score', 0))} ({extra.get('status')})")
                bar.update()
                report.write_gradebook(gradebook, [results[k] for k in sorted(results)])
    except KeyboardInterrupt:
        runner.stop_all()
        print("\nvlm-course grade: interrupted; finished submissions are saved", file=sys.stderr)
        return 130
    finally:
        bar.close()
    ordered = [results[k] for k in sorted(results)]
    print(report.summary_table(ordered))
    print(f"\nresults: {options.out_dir}/<submission>/results.json   gradebook: {gradebook}")
    errors = [r for r in ordered if r.get("extra_data", {}).get("status") == "error"]
    if errors:
        print(f"{len(errors)} submission(s) could not be graded (status error): see their results.json", file=sys.stderr)
    return 1 if errors else 0
