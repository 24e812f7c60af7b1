"""The trusted test process: ``python -m vlm_course.grading.trusted SESSION_JSON PYTEST_ARGS...``.

The runner starts it (in namespace mode inside a mount namespace of its own, ``unshare --mount``),
or has the class run's fork server fork it (``run_forked``: it then makes its own mount namespace).
It mounts the submission's scratch tmpfs (``scratch.mount_tmpfs``: size-limited, ``nosymfollow``),
forks its worker server (``forkserver``) while it holds nothing of the submission or the tests yet,
creates the shared test folder, sets a umask that lets the workers write into the folders the
tests make, and runs pytest with the grading plugin. The tmpfs lives only in this namespace: it
disappears with this process and its workers, whatever they left in it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from vlm_course.grading import forkserver, remote, sandbox, scratch
from vlm_course.grading.remote import GRADING_ENV, SessionConfig


def main(argv: list[str], env_file: str | None = None) -> int:
    """Run the tests. ``env_file``: forked processes take their environment from this JSON file (read
    only after the worker server is forked, so that nothing of it reaches a worker's memory)."""
    config_path, *pytest_args = argv
    config = SessionConfig.read(config_path)
    if config.mode == "namespace":
        scratch.mount_tmpfs(Path(config.scratch), config.scratch_mb)
    if config.start == "fork" and forkserver.supported():
        forkserver.preload(config.preload)  # already done when forked from the class server
        sandbox.become_subreaper()  # the forked workers are handed to this process
        remote.set_worker_server(forkserver.start_worker_server(sandbox.sandboxed_child))
    if env_file is not None:
        with open(env_file, encoding="utf-8") as f:
            env = json.load(f)
        os.environ.clear()
        os.environ.update(env)
    os.environ[GRADING_ENV] = config_path
    os.umask(0)  # folders the tests make (tmp_path / "saved") are writable by the workers' uids
    for folder in config.shared_dirs:
        os.mkdir(folder, 0o755)
    import pytest

    try:
        return int(pytest.main(pytest_args))
    finally:
        remote.close_worker_server()


def run_forked(request: dict, fds: list[int]) -> int:
    """The trusted test process forked by the class run's fork server (``forkserver.serve`` calls it in
    the new process, which the grader has adopted): its output goes to ``fds[0]``; in namespace mode
    the server has unshared the mount namespace, which is made private here before anything is mounted."""
    log = fds[0]
    os.setsid()
    sandbox._die_with_parent()
    forkserver.close_fds_except([log])
    forkserver.attach_stdio(log)
    os.chdir(request["cwd"])
    if request.get("unshare"):
        scratch.make_mounts_private()
    sys.argv = ["vlm_course.grading.trusted", *request["argv"]]
    try:
        return main(request["argv"], env_file=request["env_file"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - exiting anyway
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
