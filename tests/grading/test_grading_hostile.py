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
import socket
import threading
import uuid

import psutil
import pytest
from grading_cases import FULL_POINTS, REPO, SECRET, grade_cli, hostile_sources, results_of, write_submissions

from vlm_course.grading import sandbox

pytestmark = pytest.mark.skipif(not sandbox.namespace_support()[0],
                                reason=f"namespace sandbox unavailable: {sandbox.namespace_support()[1]}")

NPROC = 32
GRADER_FILE = REPO / "vlm_course" / "grading" / "report.py"


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
    server = SecretServer()
    ctx = {
        "port": server.port, "hidden_test": hidden_tests / "test_image_search.py",
        "solution": REPO / "solutions" / "image_search.py", "sibling": root / "subs" / "good" / "image_search.py",
        "grader_file": GRADER_FILE, "own_results": out / "fake_results" / "results.json",
        "good_results": out / "good" / "results.json", "gradebook": out / "gradebook.csv", "marker": marker,
    }
    paths = write_submissions(root / "subs", hostile_sources(ctx))
    grader_sha = hashlib.sha256(GRADER_FILE.read_bytes()).hexdigest()
    try:
        run = grade_cli(*paths.values(), "--tests", hidden_tests, "--out", out, "--jobs", 2, "--timeout", 40,
                        "--call-timeout", 8, "--memory-mb", 768, "--nproc", NPROC, "--sandbox", "namespace")
    finally:
        server.close()
    leftover = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    return {"run": run, "out": out, "paths": paths, "server": server, "marker": marker, "leftover": leftover,
            "grader_sha": grader_sha, "root": root}


def _details(r: dict) -> str:
    return " | ".join(r["extra_data"]["details"])


def _test(r: dict, name: str) -> dict:
    return next(t for t in r["tests"] if t["name"].endswith(name))


def test_the_run_finishes_and_the_gradebook_lists_everyone(graded):
    run = graded["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    with open(graded["out"] / "gradebook.csv", newline="") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(graded["paths"]), f"gradebook rows {sorted(rows)}"
    for name, row in rows.items():
        assert row["status"] and row["submission_sha256"] and row["tests_sha256"] and row["grader_version"], row
        assert float(row["total"]) == results_of(graded["out"], name)["score"]
    assert "good_zip" in run.stdout and "4/4" in run.stdout  # the summary table


@pytest.mark.parametrize("name", ["good", "good_zip"])
def test_honest_submissions_earn_full_points(graded, name):
    r = results_of(graded["out"], name)
    assert r["score"] == FULL_POINTS, r["output"]
    assert r["extra_data"]["status"] == "ok"
    assert [t["status"] for t in r["tests"]] == ["passed"] * 3
    assert sorted(t["name"] for t in r["tests"]) == [
        "image_search: test_index_and_search", "image_search: test_knows_the_secret", "image_search: test_rejects_bad_top_k"]
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
}


@pytest.mark.parametrize("name", sorted(set(hostile_sources({k: 0 for k in (
    "port", "hidden_test", "solution", "sibling", "grader_file", "own_results", "good_results", "gradebook", "marker")})) - {"good"}))
def test_hostile_submissions_earn_only_what_works(graded, name):
    r = results_of(graded["out"], name)
    earned = 1.0 if name == "loop_method" else 0.0  # its secret() works once a fresh worker replaces the looping one
    assert r["score"] == earned, f"{name}: {r['output']}"
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
    assert hashlib.sha256(GRADER_FILE.read_bytes()).hexdigest() == graded["grader_sha"]
    assert "AlwaysEqual" in _test(r, "test_index_and_search")["output"]  # a proxy, not an object equal to anything
    assert "DID NOT RAISE" in _test(r, "test_rejects_bad_top_k")["output"]


def test_fake_results_files_are_overwritten_or_unreachable(graded):
    assert results_of(graded["out"], "fake_results")["score"] == 0.0
    assert results_of(graded["out"], "good")["score"] == FULL_POINTS
    assert "fake_results" in (graded["out"] / "gradebook.csv").read_text()


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
