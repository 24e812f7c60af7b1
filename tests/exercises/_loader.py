"""Find and import a learner's exercise file by path (no pytest here, so a grading worker can reuse it).

A submission is a folder holding the exercise modules (``image_search.py``, ``chatbot.py``, ...):
the repository's ``solutions/`` by default, a learner's ``exercises/``, or any other folder.
Each module is imported from its file under a unique name, so ``solutions`` and ``exercises``
never shadow each other and neither folder needs to be a package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBMISSION_ENV = "VLM_COURSE_SUBMISSION"
DEFAULT_SUBMISSION = REPO_ROOT / "solutions"


class SubmissionError(Exception):
    """The submission folder or one of its modules cannot be used; the message says why and what to do."""


def submission_folder(option: str | os.PathLike | None = None) -> Path:
    """The folder to grade: ``option`` (``--submission``), else ``$VLM_COURSE_SUBMISSION``, else ``solutions/``.

    Relative paths are taken from the current directory, then from the repository root.
    """
    raw = option if option not in (None, "") else os.environ.get(SUBMISSION_ENV) or None
    if raw is None:
        return DEFAULT_SUBMISSION
    folder = Path(raw).expanduser()
    if not folder.is_absolute() and not folder.exists() and (REPO_ROOT / folder).exists():
        folder = REPO_ROOT / folder
    folder = folder.resolve()
    if not folder.is_dir():
        raise SubmissionError(
            f"submission folder {folder} does not exist. Pass the folder that holds your exercise files, "
            f"e.g. --submission exercises (or set {SUBMISSION_ENV}=exercises)."
        )
    return folder


def module_file(folder: Path, module: str) -> Path:
    """``folder/<module>.py``, or a SubmissionError that names the missing file."""
    path = Path(folder) / f"{module}.py"
    if not path.is_file():
        raise SubmissionError(
            f"{path} is missing: the submission folder {folder} must hold {module}.py. "
            f"Copy exercises/{module}.py there (or point --submission / {SUBMISSION_ENV} at the right folder)."
        )
    return path


def unique_module_name(path: Path) -> str:
    """A module name that differs for every file path, e.g. ``vlm_submission_image_search_3f2a1c9d0b``."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return f"vlm_submission_{Path(path).stem}_{digest}"


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a fresh module (re-executed on every call, so edits are picked up)."""
    path = Path(path).resolve()
    name = unique_module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise SubmissionError(
            f"importing {path} failed with {type(exc).__name__}: {exc} "
            f"(line {where.lineno} of {Path(where.filename).name}). Fix the file so that it imports cleanly."
        ) from exc
    return module


def load_submission(module: str, folder: str | os.PathLike | None = None) -> ModuleType:
    """Import ``<module>.py`` from the submission folder (see ``submission_folder``)."""
    return import_file(module_file(submission_folder(folder), module))
