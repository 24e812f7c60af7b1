"""Grading on Gradescope's own runners: the autograder bundle and what runs inside it.

``vlm-course grade --export-gradescope autograder.zip [--tests DIR] [options]`` writes a zip that
Gradescope's "programming assignment" accepts:

===================  =================================================================================
``setup.sh``         installs the course (``course/``: the package with its toy checkpoints) with pip
``run_autograder``   grades ``/autograder/submission`` (``python -m vlm_course.grading.gradescope``)
``tests/``           the test files (your hidden tests, or the course's exercise tests)
``grading.json``     the ``vlm-course grade`` options chosen at export (``--only``, time limits...)
===================  =================================================================================

Gradescope starts one container per submission, in parallel; each run writes
``/autograder/results/results.json`` (Gradescope's format), also when grading fails. The root
``/autograder`` can be moved with ``$VLM_AUTOGRADER_ROOT`` (tests run the bundle in a temporary
folder laid out the same way).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from vlm_course.grading import GRADER_VERSION, report, sandbox

ROOT_ENV = "VLM_AUTOGRADER_ROOT"
SKIP = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
cd "${VLM_AUTOGRADER_ROOT:-/autograder}/source"
python3 -m pip install --quiet --disable-pip-version-check ./course
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes results/results.json in any case.
exec "${VLM_PYTHON:-python3}" -m vlm_course.grading.gradescope "${VLM_AUTOGRADER_ROOT:-/autograder}"
"""


def _add_tree(zf: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink() and not name.endswith(".pyc"):
                zf.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")


def export(target: Path, tests_dir: Path, grade_args: list[str]) -> Path:
    """Write the autograder zip to ``target``: the course package, ``tests_dir`` and ``grade_args``."""
    course = sandbox.REPO_DIR
    if course is None or not (course / "pyproject.toml").is_file():
        raise ValueError("exporting the autograder needs the course checkout (an editable install): "
                         "run it from the course folder after `pip install -e .`")
    if not any(tests_dir.glob("test_*.py")):
        raise ValueError(f"no test_*.py files in {tests_dir}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.external_attr = 0o100755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
        zf.writestr("grading.json", json.dumps({"args": grade_args, "grader_version": GRADER_VERSION}, indent=1) + "\n")
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (course / name).is_file():
                zf.write(course / name, f"course/{name}")
        _add_tree(zf, sandbox.PACKAGE_DIR, "course/vlm_course")
        _add_tree(zf, tests_dir, "tests")
    os.replace(tmp, target)
    return target


def run(root: Path) -> int:
    """Grade ``root/submission`` with ``root/source/tests`` and write ``root/results/results.json``."""
    from vlm_course import cli

    source, results = root / "source", root / "results" / "results.json"
    started = time.time()
    out = Path(tempfile.mkdtemp(prefix="vlm-gradescope-"))
    try:
        saved = json.loads((source / "grading.json").read_text(encoding="utf-8"))
        args = ["grade", str(root / "submission"), "--tests", str(source / "tests"), "--out", str(out),
                "--quiet", "--force", *map(str, saved.get("args", []))]
        code = cli.main(args)
        produced = out / "submission" / "results.json"
        if not produced.is_file():
            raise RuntimeError(f"vlm-course grade ended with status {code} and wrote no results")
        data = json.loads(produced.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - Gradescope must get a results file whatever happens
        data = report.error_results({"name": "submission", "source": str(root / "submission")},
                                    report.printable(f"the autograder failed: {type(exc).__name__}: {exc}"),
                                    time.time() - started)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    report.write_json_atomic(results, data)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.environ.get(ROOT_ENV, "/autograder"))
    return run(root)


if __name__ == "__main__":
    sys.exit(main())
