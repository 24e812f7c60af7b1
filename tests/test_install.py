"""A non-editable install (``pip install .``) in a fresh venv finds its exercise tests and benchmarks.

The package must never reach into the repository by walking up from its own file: an installed
copy lives in ``site-packages``, far from any clone. The fresh venv borrows this environment's
dependencies through a ``.pth`` line (``--no-deps``, nothing downloaded), so only the course
package itself is installed for real. The commands run from a folder outside the repository.
About 120 s on 2 cores: 70 s grading the reference image search in the sandbox, 25 s for the
benchmark (mostly imports), 10 s for an editable install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")


def _run(args, cwd: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VLM_COURSE_SUBMISSION"))}
    env.update(HF_HUB_OFFLINE="1", VLM_COURSE_PROFILE="toy", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra_env)
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A venv holding a real (non-editable) install of a copy of this checkout."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "vlm_course", source / "vlm_course", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
                "--no-build-isolation", "--no-index", source], cwd=root)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    shutil.rmtree(source)  # the install must not need its source any more
    work = root / "work"
    work.mkdir()
    return {"venv": venv, "python": python, "site": site, "work": work, "cli": venv / "bin" / "vlm-course"}


def test_the_makefiles_editable_install_is_quiet(tmp_path):
    """``make``'s ``pip install --quiet -e .`` prints nothing (no setuptools banner)."""
    quiet = re.search(r"^QUIET_EDITABLE := (.+)$", (REPO / "Makefile").read_text(), re.M)
    assert quiet, "the Makefile names no warning filter for the editable install"
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, source / name)
    (source / "vlm_course").mkdir()
    (source / "vlm_course" / "__init__.py").write_text('"""stand-in"""\n')
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path).returncode == 0
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    args = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "-e", source]
    done = _run(args, cwd=tmp_path, PYTHONWARNINGS=quiet.group(1).strip())
    assert done.returncode == 0, done.stderr
    assert "Editable installation" not in done.stdout + done.stderr, done.stderr


def test_the_installed_package_finds_its_exercise_tests(installed):
    probe = _run([installed["python"], "-c",
                  "import json, vlm_course, vlm_course.exercise_tests as t; "
                  "print(json.dumps([vlm_course.__file__, str(t.folder()), t.exercises()]))"], cwd=installed["work"])
    assert probe.returncode == 0, probe.stderr
    package_file, tests_folder, exercises = json.loads(probe.stdout)
    assert Path(package_file).is_relative_to(installed["site"]), f"imported the checkout, not the install: {package_file}"
    assert Path(tests_folder) == installed["site"] / "vlm_course" / "exercise_tests"
    assert exercises == ["image_search", "chatbot"]
    for name in ("conftest.py", "fixtures.py", "test_image_search.py", "test_chatbot.py"):
        assert (Path(tests_folder) / name).is_file(), f"{name} is not installed with the package"


@pytest.mark.slow
def test_the_installed_grader_gives_the_reference_solution_full_marks(installed, tmp_path):
    run = _run([installed["cli"], "grade", REPO / "solutions", "--only", "image_search", "--out", tmp_path,
                "--call-timeout", 240, "--timeout", 900], cwd=installed["work"], timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    result = json.loads((tmp_path / "solutions" / "results.json").read_text())
    failed = [t["name"] for t in result["tests"] if t["status"] != "passed"]
    assert not failed and result["score"] > 0, failed or result


def test_the_installed_bench_command_takes_the_benchmarks_folder(installed):
    run = _run([installed["cli"], "bench", "search", "--benchmarks", REPO / "benchmarks", "--",
                "--skip-indexing", "--sizes", "2000", "--queries", "3", "--repeats", "1", "--no-faiss"],
               cwd=installed["work"])
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "2000" in run.stdout
