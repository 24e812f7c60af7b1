"""Find and import an exercise file by path: the one module loader of the course.

A submission is a folder holding the exercise modules (``image_search.py``, ``chatbot.py``, ...):
the repository's ``solutions/``, a learner's ``exercises/``, or any other folder. Each module is
imported from its file under a name of its own, so ``solutions`` and ``exercises`` never shadow
each other and neither folder needs to be a package. The exercise tests, the benchmarks and the
grader all load files through ``import_file``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

SUBMISSION_ENV = "VLM_COURSE_SUBMISSION"
DEFAULT_FOLDER = "solutions"


class SubmissionError(Exception):
    """The submission folder or one of its modules cannot be used; the message says why and what to do."""


def submission_folder(option: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """The folder to test: ``option`` (``--submission``), else ``$VLM_COURSE_SUBMISSION``, else ``root/solutions``.

    ``root`` is the course folder (default: the current directory). A relative path is taken from
    the current directory, then from ``root``.
    """
    base = Path(root) if root is not None else Path.cwd()
    raw = option if option not in (None, "") else os.environ.get(SUBMISSION_ENV) or None
    if raw is None:
        folder = base / DEFAULT_FOLDER
        if not folder.is_dir():
            raise SubmissionError(
                f"no submission folder given and {folder} does not exist. Pass the folder that holds your "
                f"exercise files, e.g. --submission exercises (or set {SUBMISSION_ENV}=exercises)."
            )
        return folder.resolve()
    folder = Path(raw).expanduser()
    if not folder.is_absolute() and not folder.exists() and (base / folder).exists():
        folder = base / folder
    folder = folder.resolve()
    if not folder.is_dir():
        raise SubmissionError(
            f"submission folder {folder} does not exist. Pass the folder that holds your exercise files, "
            f"e.g. --submission exercises (or set {SUBMISSION_ENV}=exercises)."
        )
    return folder


def module_file(folder: str | os.PathLike, module: str) -> Path:
    """``folder/<module>.py``, or a SubmissionError that names the missing file."""
    path = Path(folder) / f"{module}.py"
    if not path.is_file():
        raise SubmissionError(
            f"{path} is missing: the submission folder {folder} must hold {module}.py. "
            f"Copy exercises/{module}.py there (or point --submission / {SUBMISSION_ENV} at the right folder)."
        )
    return path


def unique_module_name(path: str | os.PathLike) -> str:
    """A module name that differs for every file path, e.g. ``vlm_submission_image_search_3f2a1c9d0b``."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return f"vlm_submission_{Path(path).stem}_{digest}"


def import_file(path: str | os.PathLike, name: str | None = None) -> ModuleType:
    """Import the Python file ``path`` as a fresh module (executed again on every call, so edits are seen).

    ``name`` is the module's name in ``sys.modules`` (default: ``unique_module_name(path)``).
    A file that fails to import raises SubmissionError naming the exception and the line.
    """
    path = Path(path).resolve()
    name = name or unique_module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        where = next((f for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename == str(path)), None)
        lineno = exc.lineno if isinstance(exc, SyntaxError) else where.lineno if where else None
        line = f" (line {lineno} of {path.name})" if lineno else ""
        raise SubmissionError(
            f"importing {path} failed with {type(exc).__name__}: {exc}{line}. Fix the file so that it imports cleanly."
        ) from exc
    return module


def load_submission(module: str, folder: str | os.PathLike | None = None) -> ModuleType:
    """Import ``<module>.py`` from the submission folder (see ``submission_folder``)."""
    return import_file(module_file(submission_folder(folder), module))
