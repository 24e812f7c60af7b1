"""Keep ``git status`` quiet about notebooks that were only run and saved.

The nbstripout filter (``.gitattributes``, set up by ``make lab``) makes git store notebooks
without outputs. But git compares file sizes before contents: a notebook that grew by its
outputs shows as modified until ``git add``, although nothing would be committed. JupyterLab
runs ``refresh_after_save`` after every save (``jupyter_server_config.py``): when the filtered
notebook equals what the index holds, it refreshes the index entry, so only real edits show.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def refresh_if_unchanged(path: str | Path) -> bool:
    """Refresh git's index entry of ``path`` if git would store exactly what the index holds.

    True when refreshed. Does nothing (False) outside a git work tree, for untracked files, and
    when the file really differs from the index (a learner's edit stays a change).
    """
    path = Path(path).resolve()
    folder = path.parent
    staged = _git(folder, "ls-files", "--stage", "--", path.name)
    if not staged:
        return False
    index_blob = staged.split()[1]
    cleaned_blob = _git(folder, "hash-object", f"--path={path.name}", path.name)
    if cleaned_blob != index_blob:
        return False
    return _git(folder, "update-index", "--", path.name) is not None


def refresh_after_save(model: dict | None = None, os_path: str | None = None, **_: object) -> None:
    """jupyter_server ``post_save_hook``: ``refresh_if_unchanged`` for every saved notebook."""
    if not os_path or (model or {}).get("type") != "notebook":
        return
    try:
        refresh_if_unchanged(os_path)
    except Exception:  # a save must never fail because of git
        log.debug("git index refresh after saving %s failed", os_path, exc_info=True)
