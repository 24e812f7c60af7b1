"""The trusted test process: ``python -m vlm_course.grading.trusted SESSION_JSON PYTEST_ARGS...``.

The runner starts it (in namespace mode inside a mount namespace of its own, ``unshare --mount``).
It mounts the submission's scratch tmpfs (``scratch.mount_tmpfs``: size-limited, ``nosymfollow``),
creates the shared test folder there, sets a umask that lets the workers write into the folders
the tests make, and runs pytest with the grading plugin. The tmpfs lives only in this namespace:
it disappears with this process and its workers, whatever they left in it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vlm_course.grading import scratch
from vlm_course.grading.remote import GRADING_ENV, SessionConfig


def main(argv: list[str]) -> int:
    config_path, *pytest_args = argv
    os.environ[GRADING_ENV] = config_path
    config = SessionConfig.from_env()
    if config.mode == "namespace":
        scratch.mount_tmpfs(Path(config.scratch), config.scratch_mb)
    os.umask(0)  # folders the tests make (tmp_path / "saved") are writable by the workers' uids
    for folder in config.shared_dirs:
        os.mkdir(folder, 0o755)
    import pytest

    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
