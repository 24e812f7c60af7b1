"""The hostile class: one `vlm-course grade --jobs 2` run over submissions that each break a rule.

Every hostile submission would earn points only by cheating (reading the hidden tests, copying a
classmate, getting the answer over the network, patching pytest...), so each must end with zero
points and a status that says what happened, while the honest ones (a folder and a zip) get full
points and the gradebook lists everyone. Needs the namespace sandbox (root + unshare); the
fallback is tested in test_grading_fallback.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import threading
import uuid

import psutil
import pytest
from grading_cases import (
    FULL_POINTS,
    REPO,
    SECRET,
    TOKEN,
    deeper_hostile_sources,
    grade_cli,
    hostile_sources,
    results_of,
    write_bad_files,
    write_submissions,
)

from vlm_course.grading import sandbox

pytestmark = pytest.mark.skipif(not sandbox.namespace_support()[0],
                                reason=f"namespace sandbox unavailable: {sandbox.namespace_support()[1]}")

NPROC = 32
GRADER_FILE = REPO / "vlm_course" / "grading" / "report.py"
TOY_MODELS = REPO / "vlm_course" / "toy_models"
HOST_FOLDERS = ("/run/lock", "/var/tmp", "/dev/shm", "/tmp", "/usr/local/bin", "/etc", "/dev/mqueue")


def _tree_digest(root) -> str:
    h = hashlib.sha256()
    for dirpath, _dirnames, filenames in sorted(os.walk(root)):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(f"{path} {st.st_uid} {st.st_mode:o}\n".encode())
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _shm_keys() -> set[int]:
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[0]) for line in f.read().splitlines()[1:] if line.split()}


class SecretServer:
    """Hands out the secret to anyone who connects: only a submission with network access gets it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.sendall(SECRET.encode())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, hidden_tests):
    root = tmp_path_factory.mktemp("hostile_class")
    out = root / "out"
    marker = f"vlm-grading-daemon-{uuid.uuid4().hex}"
    canary = root / "canary.txt"
    canary.write_text("a host file no submission may change")
    canary.chmod(0o644)
    server = SecretServer()
    ctx = {
        "port": server.port, "hidden_test": hidden_tests / "test_image_search.py",
        "solution": REPO / "solutions" / "image_search.py", "sibling": root / "subs" / "good" / "image_search.py",
        "grader_file": GRADER_FILE, "own_results": out / "fake_results" / "results.json",
        "good_results": out / "good" / "results.json", "gradebook": out / "gradebook.csv", "marker": marker,
        "hidden_dir": hidden_tests, "canary_file": canary, "ipc_key": 0x5600000 + os.getpid() % 0x10000,
    }
    paths = write_submissions(root / "subs", {**hostile_sources(ctx), **deeper_hostile_sources(ctx)})
    paths.update(write_bad_files(root / "bad"))
    before = {"grader": hashlib.sha256(GRADER_FILE.read_bytes()).hexdigest(), "toy_models": _tree_digest(TOY_MODELS),
              "canary": os.stat(canary), "hidden": _tree_digest(hidden_tests)}
    try:
        run = grade_cli(*paths.values(), "--tests", hidden_tests, "--out", out, "--jobs", 2, "--timeout", 40,
                        "--call-timeout", 8, "--memory-mb", 768, "--nproc", NPROC, "--sandbox", "namespace",
                        tmpdir=root / "grader_tmp", env={"HF_TOKEN": TOKEN})
    finally:
        server.close()
    leftover = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    return {"run": run, "out": out, "paths": paths, "server": server, "marker": marker, "leftover": leftover,
            "before": before, "root": root, "ctx": ctx, "canary": canary}


def _details(r: dict) -> str:
    return " | ".join(r["extra_data"]["details"])


def _test(r: dict, name: str) -> dict:
    return next(t for t in r["tests"] if t["name"].endswith(name))


def test_the_run_finishes_and_the_gradebook_lists_everyone(graded):
    run = graded["run"]
    assert run.returncode == 1, run.stderr[-3000:]  # 1: some submissions (the bad files) could not be graded
    assert "could not be graded (status error)" in run.stderr
    with open(graded["out"] / "gradebook.csv", newline="") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(graded["paths"]), f"gradebook rows {sorted(rows)}"
    for name, row in rows.items():
        assert row["status"] and row["submission_sha256"] and row["tests_sha256"] and row["grader_version"], row
        assert float(row["total"]) == results_of(graded["out"], name)["score"]
    assert "good_zip" in run.stdout and "5/5" in run.stdout  # the summary table
    summary = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert "image_search.py: the file is missing" in summary["empty"], "non-ok rows say why"
    assert "encrypted" in summary["encrypted"] and summary["good"].rstrip().endswith("ok")


@pytest.mark.parametrize("name", ["good", "good_zip"])
def test_honest_submissions_earn_full_points(graded, name):
    r = results_of(graded["out"], name)
    assert r["score"] == FULL_POINTS, r["output"]
    assert r["extra_data"]["status"] == "ok"
    assert [t["status"] for t in r["tests"]] == ["passed"] * 4
    assert sorted(t["name"] for t in r["tests"]) == [
        "image_search: test_index_and_search", "image_search: test_knows_the_secret", "image_search: test_rejects_bad_top_k",
        "image_search: test_save_writes_one_file"]
    assert {t["max_score"] for t in r["tests"]} == {1.0, 2.0} and sum(t["max_score"] for t in r["tests"]) == FULL_POINTS
    sandbox_info = r["extra_data"]["sandbox"]
    assert sandbox_info["network"] == "namespace" and sandbox_info["filesystem"] == "hidden" and sandbox_info["uid"] >= 61000


EXPECTED = {  # name -> (status, words the details must contain)
    "empty": ("missing", "image_search.py: the file is missing"),
    "loop_import": ("timeout", "importing image_search.py did not finish within 8 s"),
    "loop_method": ("timeout", "CLIPImageSearch.search(...) did not finish"),
    "fork_bomb": ("import-error", "fork bomb stopped after"),
    "memory_hog": ("import-error", "MemoryError"),
    "exit_import": ("crashed", "exited with status 0"),
    "sys_exit_import": ("import-error", "SystemExit"),
    "daemon": ("daemon", "left 1 process(es) running"),
    "flood": ("ok", "bytes of output beyond 65536 were dropped"),
    "conftest": ("ok", "refused files: "),
    "huge_reply": ("protocol-error", "more than the limit of 1000000"),
    "encrypted": ("error", "image_search.py is encrypted (password-protected)"),
    "method": ("error", "uses compression method 99"),
    "corrupt": ("error", "is damaged in the zip"),
}
BAD_FILES = {"encrypted", "method", "corrupt"}
GRADED_LIKE_GOOD = {"looks_like", "odd", "Good-2"}


CTX_KEYS = ("port", "hidden_test", "solution", "sibling", "grader_file", "own_results", "good_results", "gradebook", "marker",
            "hidden_dir", "canary_file", "ipc_key")
EARNED = {"loop_method": 2.0, "guess_secret": 4.0}  # what works in them: secret() and save() in a fresh worker; all but secret()


@pytest.mark.parametrize("name", sorted((set(hostile_sources(dict.fromkeys(CTX_KEYS, 0)))
                                         | set(deeper_hostile_sources(dict.fromkeys(CTX_KEYS, 0))) | BAD_FILES) - {"good"}))
def test_hostile_submissions_earn_only_what_works(graded, name):
    r = results_of(graded["out"], name)
    assert r["score"] == EARNED.get(name, 0.0), f"{name}: {r['output']}"
    if name not in BAD_FILES:
        assert sum(t["max_score"] for t in r["tests"]) == FULL_POINTS, "every test is listed, worth its points"
    if name in EXPECTED:
        status, words = EXPECTED[name]
        assert r["extra_data"]["status"] == status, f"{name}: {_details(r)}"
        assert words in _details(r), f"{name}: {_details(r)}"


def test_fork_bomb_is_stopped_by_the_process_limit(graded):
    details = _details(results_of(graded["out"], "fork_bomb"))
    n = int(details.split("fork bomb stopped after ")[1].split()[0])
    assert 0 < n < NPROC, details
    assert "Resource temporarily unavailable" in details


def test_a_loop_in_one_method_costs_only_the_tests_that_call_it(graded):
    r = results_of(graded["out"], "loop_method")
    for name in ("test_index_and_search", "test_rejects_bad_top_k"):
        assert "CLIPImageSearch.search(...) did not finish within 8 s" in _test(r, name)["output"]
    assert _test(r, "test_knows_the_secret")["status"] == "passed", "a fresh worker serves the next test"


# ---- the deeper round: the trusted side itself ----------------------------------------------------------


def _failure(r: dict, name: str) -> str:
    """The full failure message of a hidden test (instructor-only: extra_data)."""
    return r["extra_data"]["failures"][f"image_search: {name}"]


def test_root_never_follows_links_the_worker_planted(graded):
    r = results_of(graded["out"], "planted_links")
    assert "Too many levels of symbolic links" in _failure(r, "test_save_writes_one_file")
    assert "['test_image_search.py']" not in json.dumps(r), "the hidden tests folder was listed through the worker's link"
    assert graded["canary"].read_text() == "a host file no submission may change"


def test_no_host_file_changed_owner_mode_or_content(graded):
    before, now = graded["before"], os.stat(graded["canary"])
    assert (now.st_uid, now.st_gid, now.st_mode, now.st_mtime_ns) == (
        before["canary"].st_uid, before["canary"].st_gid, before["canary"].st_mode, before["canary"].st_mtime_ns)
    assert _tree_digest(TOY_MODELS) == before["toy_models"], "the shipped toy checkpoints changed"
    assert _tree_digest(graded["ctx"]["hidden_dir"]) == before["hidden"]


def test_a_fifo_blocks_only_its_own_test(graded):
    r = results_of(graded["out"], "fifo")
    assert "was stuck for 8 s outside the learner's code" in _test(r, "test_save_writes_one_file")["output"]
    assert r["extra_data"]["status"] != "error" and r["extra_data"]["complete"] is True


def test_no_shared_memory_or_host_files_outlive_the_run(graded):
    assert graded["ctx"]["ipc_key"] not in _shm_keys(), "a System V segment left by the sandbox"
    for folder in HOST_FOLDERS:
        assert not os.path.exists(os.path.join(folder, graded["marker"])), f"{folder} was writable from the sandbox"


def test_no_residue_in_tmp(graded):
    assert os.listdir(graded["root"] / "grader_tmp") == [], "grading left folders in its temporary folder"
    assert results_of(graded["out"], "deep_chain")["extra_data"]["status"] == "ok"


def test_hidden_expected_values_never_reach_the_learner(graded):
    for name in graded["paths"]:
        r = results_of(graded["out"], name)
        visible = r["output"] + "".join(t["output"] for t in r["tests"])
        assert SECRET not in visible, f"{name}: the secret is in the visible output"
    r = results_of(graded["out"], "guess_secret")
    shown = _test(r, "test_knows_the_secret")["output"]
    assert "secret() returns the instructor's secret" in shown and "expected value is not shown" in shown, shown
    assert SECRET in r["extra_data"]["failures"]["image_search: test_knows_the_secret"], "the instructor still sees it"


def test_bad_files_are_error_rows_and_odd_names_are_shown_safely(graded):
    for name in GRADED_LIKE_GOOD:
        r = results_of(graded["out"], name)
        assert r["score"] == FULL_POINTS and r["extra_data"]["status"] == "ok", f"{name}: {r['output']} {_details(r)}"
    refused = results_of(graded["out"], "odd")["extra_data"]["refused"]
    assert refused == ["n\\udcffme\\x1b[31m.txt"], refused
    gradebook = (graded["out"] / "gradebook.csv").read_text()
    assert "\x1b" not in gradebook and "\x1b" not in graded["run"].stdout


def test_no_network_inside_the_sandbox(graded):
    r = results_of(graded["out"], "network")
    assert graded["server"].connections == 0, "the submission reached the test's server"
    assert "Network is unreachable" in _test(r, "test_knows_the_secret")["output"]


def test_hidden_tests_solutions_and_classmates_are_invisible(graded):
    out = _test(results_of(graded["out"], "reads_secrets"), "test_knows_the_secret")["output"]
    assert "could not read" in out and out.count("FileNotFoundError") >= 3, out


def test_refused_files_never_reach_the_sandbox(graded):
    extra = results_of(graded["out"], "conftest")["extra_data"]
    assert extra["files"] == ["image_search.py"]
    assert sorted(extra["refused"]) == sorted(["conftest.py", "sitecustomize.py", "evil.pth", "pytest.ini",
                                               "pyproject.toml", "setup.cfg", "tox.ini", "extra/helper.py"])


def test_flooding_output_is_capped(graded):
    size = (graded["out"] / "flood" / "results.json").stat().st_size
    assert size < 200_000, f"results.json of the flood is {size} bytes"


def test_patching_pytest_or_the_grader_changes_nothing(graded):
    r = results_of(graded["out"], "monkeypatch")
    assert hashlib.sha256(GRADER_FILE.read_bytes()).hexdigest() == graded["before"]["grader"]
    assert "AlwaysEqual" in _failure(r, "test_index_and_search")  # a proxy, not an object equal to anything
    assert "DID NOT RAISE" in _failure(r, "test_rejects_bad_top_k")
    assert "did not raise the exception this test expects" in _test(r, "test_rejects_bad_top_k")["output"]


def test_fake_results_files_are_overwritten_or_unreachable(graded):
    assert results_of(graded["out"], "fake_results")["score"] == 0.0
    assert results_of(graded["out"], "good")["score"] == FULL_POINTS
    assert "fake_results" in (graded["out"] / "gradebook.csv").read_text()


def test_a_forked_worker_inherits_no_way_back_no_privileges_and_no_secrets(graded):
    """Workers are forked from a process that imported torch before any learner code ran: they hold
    no descriptor of a fork server, no capability, and neither the hidden tests nor the grader's token."""
    r = results_of(graded["out"], "inherits")
    assert r["extra_data"]["sandbox"]["start"].startswith("forked"), r["extra_data"]["sandbox"]
    shown = _test(r, "test_knows_the_secret")["output"]
    found = json.loads(shown.split("REPORT ", 1)[1].splitlines()[0])
    assert found["found"] == [] and found["test_modules"] == [], found
    assert "socket" not in found["fds"] and len(found["fds"]) <= 6, found["fds"]  # 0-2, two pipes, listdir's own
    assert found["caps"] == ["0000000000000000"] * 5 and found["no_new_privs"] == "1", found
    assert found["uid"] == r["extra_data"]["sandbox"]["uid"] >= 61000


def test_daemons_die_with_the_sandbox(graded):
    assert graded["leftover"] == [], f"processes left by the daemon submission: {graded['leftover']}"


def test_a_second_run_skips_what_is_already_graded(graded, hidden_tests):
    paths = [graded["paths"]["good"], graded["paths"]["exit_import"]]
    before = (graded["out"] / "good" / "results.json").read_text()
    again = grade_cli(*paths, "--tests", hidden_tests, "--out", graded["out"], "--sandbox", "namespace")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("(cached)") == 2, again.stdout
    assert (graded["out"] / "good" / "results.json").read_text() == before
    with open(graded["out"] / "gradebook.csv", newline="") as f:
        assert [row["submission"] for row in csv.DictReader(f)] == ["good", "exit_import"]
