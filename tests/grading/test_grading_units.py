"""Unit tests of the grader's parts: the JSON protocol, rebuilt exceptions, remote proxies (in the
process sandbox, which runs anywhere), reading submissions, the records and the mount plan."""

from __future__ import annotations

import json
import math
import os
import pathlib
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vlm_course.grading import GRADER_VERSION, protocol, remote, report, runner, sandbox

# ---- protocol -------------------------------------------------------------------------------------------


def _roundtrip(value):
    return protocol.decode(json.loads(json.dumps(protocol.encode(value))))


def test_protocol_keeps_the_types_tests_check():
    value = {
        "tuple": (1, "a", None), "list": [True, 2.5], "set": {1, 2}, "frozen": frozenset({"x"}),
        "keys": {1: "one", (2, 3): "pair"}, "tag": {"$t": "not a tag"}, "bytes": b"\x00\xff", "path": pathlib.Path("/x/y.png"),
        "nan": float("nan"), "inf": float("-inf"), "f32": np.float32(0.25), "i64": np.int64(7), "flag": np.bool_(True),
    }
    back = _roundtrip(value)
    assert back["tuple"] == (1, "a", None) and isinstance(back["tuple"], tuple)
    assert back["list"] == [True, 2.5] and back["set"] == {1, 2} and back["frozen"] == frozenset({"x"})
    assert back["keys"] == {1: "one", (2, 3): "pair"} and back["tag"] == {"$t": "not a tag"}
    assert back["bytes"] == b"\x00\xff" and back["path"] == pathlib.Path("/x/y.png")
    assert math.isnan(back["nan"]) and back["inf"] == float("-inf")
    assert type(back["f32"]) is np.float32 and back["f32"] == np.float32(0.25)  # not silently a Python float
    assert type(back["i64"]) is np.int64 and type(back["flag"]) is np.bool_
    assert type(_roundtrip(3)) is int and type(_roundtrip(3.0)) is float and type(_roundtrip(True)) is bool


def test_protocol_carries_images_arrays_and_tensors():
    rgb = Image.new("RGB", (5, 3), (10, 20, 30))
    rgb.putpixel((4, 2), (1, 2, 3))
    pal = Image.new("P", (2, 2))
    pal.putpalette([255, 0, 0] * 256)
    for image in (rgb, rgb.convert("L"), rgb.convert("RGBA"), pal):
        back = _roundtrip(image)
        assert back.mode == image.mode and back.size == image.size and back.tobytes() == image.tobytes()
    assert _roundtrip(pal).convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    back = _roundtrip(arr)
    assert back.dtype == np.float32 and back.shape == (3, 2) and np.array_equal(back, arr)
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    back = _roundtrip(t)
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


def test_protocol_refuses_what_it_cannot_carry_safely():
    with pytest.raises(TypeError, match="cannot send a builtins.function"):
        protocol.encode(lambda: 1)
    with pytest.raises(TypeError, match="cannot send"):
        protocol.encode(np.array([object()], dtype=object))
    bad = [
        {"$t": "ndarray", "dtype": "<f4", "shape": [3], "v": "AAAA"},  # 3 bytes for 12
        {"$t": "ndarray", "dtype": "|O", "shape": [1], "v": ""},
        {"$t": "image", "mode": "RGB", "size": [100000, 100000], "v": ""},
        {"$t": "pickle", "v": ""},
        {"$t": "ref", "id": 1},
    ]
    for data in bad:
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(data)


def test_framing_over_a_pipe():
    r, w = os.pipe()
    try:
        protocol.send(w, {"op": "ping", "x": [1, 2]})
        assert protocol.receive(r, timeout=5) == {"op": "ping", "x": [1, 2]}
        with pytest.raises(protocol.ChannelTimeout):
            protocol.receive(r, timeout=0.2)
        protocol.send(w, {"big": "x" * 1000})
        with pytest.raises(protocol.ProtocolError, match="exceeds the 100-byte limit"):
            protocol.receive(r, timeout=5, limit=100)  # the grader then kills the worker
    finally:
        os.close(w)
        os.close(r)
    r, w = os.pipe()
    try:
        protocol.send(w, {"ok": [0] * 5000})  # legal and small in bytes, but too many values for this reader
        with pytest.raises(protocol.ProtocolError, match="more than the limit of 1000"):
            protocol.receive(r, timeout=5, max_items=1000)
    finally:
        os.close(w)
        os.close(r)
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(protocol.ChannelClosed):
        protocol.receive(r, timeout=5)
    os.close(r)


def test_output_buffers_keep_a_bounded_head_or_tail():
    for tail in (False, True):
        r, w = os.pipe()
        buf = remote.OutputBuffer(r, 1000, tail=tail)
        for i in range(200):
            os.write(w, f"line {i:04d} ".encode() * 10)
        os.close(w)
        buf.thread.join(timeout=10)
        assert len(buf.kept) == 1000 and buf.dropped == 200 * 100 - 1000
        assert ("line 0199" in buf.text()) is tail and ("line 0000" in buf.text()) is not tail


# ---- exceptions ---------------------------------------------------------------------------------------------


def _err(exc: BaseException) -> dict:
    from vlm_course.grading.worker import describe_error

    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return describe_error(caught, None)


def test_exceptions_come_back_as_the_same_builtin_type():
    with pytest.raises(ValueError, match=r"no_such_image\.png"):
        raise remote.rebuild_exception(_err(ValueError("cannot read no_such_image.png")), "here")
    key = remote.rebuild_exception(_err(KeyError("missing")), "here")
    assert type(key) is KeyError and str(key) == "'missing'"
    nf = remote.rebuild_exception(_err(FileNotFoundError(2, "No such file", "x.png")), "here")
    assert type(nf) is FileNotFoundError and nf.filename == "x.png" and nf.errno == 2

    class LearnerError(ValueError):
        pass

    custom = remote.rebuild_exception(_err(LearnerError("top_k must be >= 1")), "here")
    assert type(custom) is ValueError and str(custom) == "top_k must be >= 1"
    assert any("raised in the sandbox as" in n and "LearnerError" in n for n in custom.__notes__)
    stop = remote.rebuild_exception(_err(SystemExit(3)), "calling chat")
    assert isinstance(stop, remote.RemoteError) and not isinstance(stop, ValueError) and "SystemExit" in str(stop)


# ---- remote proxies in the process sandbox ------------------------------------------------------------------

CALC = '''
import warnings
import numpy as np


class Calc:
    def __init__(self, base=0):
        self.base = base
        self.history = []

    def add(self, x):
        if x < 0:
            raise ValueError(f"negative: {x}")
        self.base += x
        self.history.append((x, self.base))
        return self.base

    def noisy(self):
        warnings.warn("careful with noisy()", RuntimeWarning)
        print("noisy was called")
        return np.float32(1.5)

    def pieces(self, n):
        for i in range(n):
            yield str(i)

    def apply(self, fn):
        return fn(1)

    def loop(self):
        while True:
            pass
'''


def _calc_session(tmp_path, call_timeout: float):
    source, work = tmp_path / "src", tmp_path / "scratch"
    source.mkdir()
    work.mkdir()
    (source / "image_search.py").write_text(CALC)
    config = remote.SessionConfig(source_dir=str(source), scratch=str(work), mode="process", call_timeout=call_timeout,
                                  max_restarts=1, limits=sandbox.Limits(cpu_s=60, memory_mb=2048, nproc=64).as_dict())
    return remote.RemoteSession(config)


@pytest.fixture
def calc_session(tmp_path):
    """A session with a short call timeout, for the tests that provoke it."""
    session = _calc_session(tmp_path, call_timeout=3)
    yield session
    session.close()


@pytest.fixture
def patient_calc_session(tmp_path):
    """A session whose calls may take long on a loaded machine (the worker imports numpy on first use)."""
    session = _calc_session(tmp_path, call_timeout=60)
    yield session
    session.close()


def test_proxies_forward_calls_values_errors_and_warnings(patient_calc_session):
    calc_session = patient_calc_session
    mod = calc_session.import_module("image_search")
    calc = mod.Calc(3)
    assert calc.add(4) == 7 and calc.history == [(4, 7)] and calc.base == 7
    with pytest.raises(ValueError, match="negative: -1"):
        calc.add(-1)
    with pytest.warns(RuntimeWarning, match="careful with noisy"):
        value = calc.noisy()
    assert type(value) is np.float32
    printed = ""
    for _ in range(100):  # the output arrives through a pipe read by a thread: give it a moment
        printed += calc_session.take_output()
        if "noisy was called" in printed:
            break
        time.sleep(0.05)
    assert "noisy was called" in printed
    assert list(calc.pieces(3)) == ["0", "1", "2"]
    with pytest.raises(TypeError, match="cannot send a builtins.function"):
        calc.apply(lambda x: x)
    with pytest.raises(AttributeError):
        calc.no_such_method()
    assert "Calc" in repr(calc)


def test_a_looping_call_is_killed_and_the_worker_restarts_until_the_limit(calc_session):
    mod = calc_session.import_module("image_search")
    calc = mod.Calc()
    with pytest.raises(remote.SandboxError, match=r"Calc\.loop\(\.\.\.\) did not finish within 3 s"):
        calc.loop()
    with pytest.raises(remote.SandboxError, match="it is gone"):
        calc.add(1)  # the instance died with its worker
    fresh = mod.Calc(1)  # the class reconnects by name in a new worker
    assert fresh.add(1) == 2
    with pytest.raises(remote.SandboxError):
        fresh.loop()
    with pytest.raises(remote.SandboxError, match="gave up after 2 worker failures"):
        mod.Calc()
    assert [e["kind"] for e in calc_session.events] == ["timeout", "timeout"]


# ---- reading submissions --------------------------------------------------------------------------------------


def test_a_folder_keeps_only_the_exercise_files(tmp_path):
    sub = tmp_path / "bob"
    (sub / "notes").mkdir(parents=True)
    (sub / "image_search.py").write_text("A = 1\n")
    (sub / "conftest.py").write_text("")
    (sub / "notes" / "chatbot.py").write_text("")  # not at the top: refused
    (sub / "chatbot.py").symlink_to("/etc/hostname")
    (sub / "__pycache__").mkdir()
    s = runner.read_submission(sub)
    assert s.name == "bob" and s.files == {"image_search.py": b"A = 1\n"} and s.error is None
    assert sorted(s.refused) == ["chatbot.py (not a regular file)", "conftest.py", "notes/chatbot.py"]


def test_a_zip_with_one_top_folder_matches_the_same_folder(tmp_path):
    folder = tmp_path / "carol"
    folder.mkdir()
    (folder / "image_search.py").write_text("A = 1\n")
    with zipfile.ZipFile(tmp_path / "carol.zip", "w") as zf:
        zf.writestr("carol/image_search.py", "A = 1\n")
        zf.writestr("__MACOSX/carol/._image_search.py", "junk")
    from_zip = runner.read_submission(tmp_path / "carol.zip")
    assert from_zip.name == "carol" and from_zip.files == {"image_search.py": b"A = 1\n"} and from_zip.refused == []
    assert from_zip.sha256 == runner.read_submission(folder).sha256
    with zipfile.ZipFile(tmp_path / "big.zip", "w") as zf:
        zf.writestr("image_search.py", "#" * (runner.MAX_FILE_BYTES + 1))
    assert runner.read_submission(tmp_path / "big.zip").refused == ["image_search.py (larger than 1024 KiB)"]
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert "not a folder or a .zip" in runner.read_submission(tmp_path / "broken.zip").error
    assert "no such file" in runner.read_submission(tmp_path / "nobody").error


# ---- records ------------------------------------------------------------------------------------------------------


def _data(**over):
    tests = [
        {"nodeid": "t/test_image_search.py::test_a", "group": "image_search", "name": "test_a", "points": 2.0,
         "phases": {"setup": "passed", "call": "passed", "teardown": "passed"}, "message": "", "output": "hi"},
        {"nodeid": "t/test_image_search.py::test_b", "group": "image_search", "name": "test_b", "points": 1.0,
         "phases": {"setup": "passed", "call": "passed", "teardown": "failed"}, "message": "teardown broke", "output": ""},
        {"nodeid": "t/test_chatbot.py::test_c", "group": "chatbot", "name": "test_c", "points": 3.0,
         "phases": {"setup": "failed"}, "message": "chatbot.py is missing", "output": ""},
        {"nodeid": "t/test_chatbot.py::test_d", "group": "chatbot", "name": "test_d", "points": 1.0, "phases": {},
         "message": "", "output": ""},
    ]
    data = {"finished": False, "tests": tests, "collection_errors": [], "events": [
        {"module": "chatbot", "kind": "missing", "detail": "the file is missing from the submission", "test": None},
        {"module": "image_search", "kind": "timeout", "detail": "x did not finish", "test": None}],
        "protections": {"mode": "process"}, "worker_output": {}}
    data.update(over)
    return data


META = {"name": "dave", "source": "/s/dave", "submission_sha256": "a" * 64, "tests_sha256": "b" * 64,
        "grader_version": GRADER_VERSION, "files": ["image_search.py"], "refused": ["conftest.py"]}


def test_results_follow_gradescope_and_count_only_clean_passes():
    r = report.build_results(META, _data(), "", runner.GradeOptions(), 12.34)
    assert set(r) >= {"score", "execution_time", "output", "tests"} and r["score"] == 2.0 and r["execution_time"] == 12.3
    assert [(t["name"], t["score"], t["max_score"], t["status"]) for t in r["tests"]] == [
        ("image_search: test_a", 2.0, 2.0, "passed"), ("image_search: test_b", 0.0, 1.0, "failed"),
        ("chatbot: test_c", 0.0, 3.0, "failed"), ("chatbot: test_d", 0.0, 1.0, "failed")]
    assert all(t["visibility"] == "visible" for t in r["tests"])
    assert "printed by the submission during this test ---\nhi" in r["tests"][0]["output"]
    assert "not run: grading of this submission was stopped" in r["tests"][3]["output"]
    extra = r["extra_data"]
    assert extra["status"] == "timeout" and extra["complete"] is True  # the most serious event wins
    assert extra["details"] == ["image_search.py: x did not finish", "chatbot.py: the file is missing from the submission",
                                "refused files: conftest.py"], "the reason of the status comes first"
    assert extra["groups"] == {"image_search": {"score": 2.0, "max_score": 3.0}, "chatbot": {"score": 0.0, "max_score": 4.0}}
    assert extra["submission_sha256"] == "a" * 64 and extra["tests_sha256"] == "b" * 64 and extra["grader_version"] == GRADER_VERSION
    broken = report.build_results(META, _data(collection_errors=["t/test_x.py: SyntaxError"]), "", runner.GradeOptions(), 1)
    assert broken["extra_data"]["status"] == "error" and broken["extra_data"]["complete"] is False
    assert report.build_results(META, None, "Traceback: boom", runner.GradeOptions(), 1)["extra_data"]["status"] == "error"


def test_gradebook_summary_and_skipping(tmp_path):
    ok = report.build_results(META, _data(), "", runner.GradeOptions(), 1.0)
    err = report.error_results(dict(META, name="erin"), "cannot read the submission", 0.5)
    path = tmp_path / "out" / "gradebook.csv"
    report.write_gradebook(path, [ok, err])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("submission,image_search,chatbot,total,max_score,status,details,submission_sha256")
    assert lines[1].startswith("dave,2,0,2,7,timeout,") and lines[2].startswith("erin,,,0,0,error,cannot read")
    table = report.summary_table([ok, err])
    assert "dave" in table and "2/3" in table and "0/4" in table and "2/7" in table and "timeout" in table
    results = tmp_path / "out" / "dave" / "results.json"
    report.write_json_atomic(results, ok)
    assert sorted(p.name for p in results.parent.iterdir()) == ["results.json"]
    assert runner.previous_result(results, "a" * 64, "b" * 64) == ok
    assert runner.previous_result(results, "c" * 64, "b" * 64) is None  # the submission changed
    assert runner.previous_result(results, "a" * 64, "c" * 64) is None  # the tests changed
    report.write_json_atomic(results, err | {"extra_data": dict(err["extra_data"], submission_sha256="a" * 64, tests_sha256="b" * 64)})
    assert runner.previous_result(results, "a" * 64, "b" * 64) is None  # errors are graded again


def test_cells_and_names_are_safe_for_spreadsheets_and_terminals(tmp_path):
    from vlm_course.grading.commands import unique_names

    assert report.csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and report.csv_cell("@x") == "'@x"
    assert report.csv_cell("-1+2") == "'-1+2" and report.csv_cell("ok") == "ok"
    assert report.printable("a\x1b[31mb\nc\udcff") == "a\\x1b[31mb\\nc\\udcff"
    names = unique_names([pathlib.Path("a/alice"), pathlib.Path("b/Alice.zip"), pathlib.Path("alice-2"), pathlib.Path("c/alice")])
    assert len({n.casefold() for n in names}) == 4, names
    err = report.error_results(dict(META, name="=cmd|x"), "bad\x1b]0;title\x07 file", 0.1)
    path = tmp_path / "gradebook.csv"
    report.write_gradebook(path, [err])
    text = path.read_text()
    assert "\x1b" not in text and "\x07" not in text and "\n'=cmd|x," in text


def test_the_summary_says_why_a_row_is_not_ok():
    ok = report.build_results(META, _data(events=[]), "", runner.GradeOptions(), 1.0)
    err = report.error_results(dict(META, name="erin"), "cannot grade erin.zip: image_search.py is encrypted "
                               "(password-protected): make the zip again without a password", 0.5)
    lines = report.summary_table([ok, err]).splitlines()
    assert lines[0].split() == ["submission", "image_search", "chatbot", "total", "status", "reason"]
    assert lines[2].rstrip().endswith(" ok")
    assert lines[3].split()[4:8] == ["error", "cannot", "grade", "erin.zip:"] and lines[3].endswith("...")
    # the reason shown is the one of the status, whichever event came first
    mixed = report.build_results(META, _data(), "", runner.GradeOptions(), 1.0)
    row = report.summary_table([mixed]).splitlines()[2]
    assert "timeout" in row and row.endswith("image_search.py: x did not finish"), row
    for kind, status in (("crash", "crashed"), ("import", "import-error"), ("protocol", "protocol-error"),
                         ("daemon", "daemon"), ("missing", "missing")):
        events = [{"module": "chatbot", "kind": "daemon" if kind != "daemon" else "missing", "detail": "other"},
                  {"module": "image_search", "kind": kind, "detail": f"why {kind}"}]
        r = report.build_results(dict(META, refused=[]), _data(events=events), "", runner.GradeOptions(), 1.0)
        if kind == "daemon":  # missing is more serious than daemon
            assert r["extra_data"]["status"] == "missing" and report.reason(r) == "chatbot.py: other"
            continue
        assert r["extra_data"]["status"] == status and report.reason(r) == f"image_search.py: why {kind}", r["extra_data"]


def test_the_process_sandbox_says_what_it_lacks(monkeypatch):
    from vlm_course.grading import sandbox

    def lacks(euid: int, others_read_python: bool) -> str:
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: euid)
        monkeypatch.setattr(sandbox, "_reachable_by_others", lambda path: others_read_python)
        return " | ".join(sandbox.process_lacks())

    for words in ("network isolation", "hidden files", "read-only host", "nosymfollow", "disk quota", "IPC namespace"):
        assert words in lacks(0, True)
    assert "user of its own" not in lacks(0, True), "root drops the worker to a sandbox uid"
    assert "runs as root" in lacks(0, False) and "does not enforce --nproc" in lacks(0, False)
    assert "runs as your user" in lacks(1000, True) and "/proc" in lacks(1000, True)
    line = report._sandbox_line({"mode": "process", "limits": {}, "lacks": ["a", "b, c"]})
    assert line.endswith("WEAKER SANDBOX: it lacks a; b, c."), line


def test_hidden_tests_show_the_description_and_the_learners_part_only():
    data = _data(events=[])
    data["tests"][1].update(message="assert 'guess' == 's3cr3t'", public="a check in this test failed", description="b works")
    options = runner.GradeOptions(withhold=True)
    r = report.build_results(META, data, "", options, 1.0)
    assert "s3cr3t" not in json.dumps([r["output"], r["tests"]])
    assert r["tests"][1]["output"] == "b works\na check in this test failed"
    assert r["extra_data"]["failures"]["image_search: test_b"] == "assert 'guess' == 's3cr3t'"
    shown = report.build_results(META, data, "", runner.GradeOptions(), 1.0)
    assert "s3cr3t" in shown["tests"][1]["output"], "the course's own tests show everything"
    data["tests"][0]["name"] = "test_a[question-s3cr3t]"
    cased = report.build_results(META, data, "", options, 1.0)
    assert cased["tests"][0]["name"] == "image_search: test_a[case 1]" and "s3cr3t" not in json.dumps(cased["tests"])
    hidden = report.build_results(META, data, "", runner.GradeOptions(visibility="hidden"), 1.0)
    assert hidden["visibility"] == "hidden" and {t["visibility"] for t in hidden["tests"]} == {"hidden"}
    assert report.error_results(META, "x", 0.1, "after_due_date")["visibility"] == "after_due_date"


def test_a_deep_folder_chain_is_removed_without_recursion(tmp_path):
    from vlm_course.grading import scratch

    # on a tmpfs where there is one: a disk with online discard takes seconds per thousand folders
    base = tempfile.mkdtemp(dir="/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp_path
    top = pathlib.Path(base) / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for depth in range(3000):  # deeper than PATH_MAX allows to name and than recursion would go
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
        if depth % 1000 == 0:  # a link out, a file, and a folder a worker made unreadable
            os.symlink("/etc", "link", dir_fd=fd)
            os.close(os.open("file", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
            os.mkdir("closed", 0, dir_fd=fd)
    os.close(fd)
    scratch.remove_tree(top)
    assert not top.exists() and os.path.isdir("/etc") and os.listdir("/etc")
    os.rmdir(base)


def test_files_the_tests_wrote_are_opened_to_the_workers_and_nothing_else(tmp_path):
    from vlm_course.grading import scratch

    shared, outside = tmp_path / "shared", tmp_path / "outside.txt"
    (shared / "model").mkdir(parents=True)
    (shared / "model").chmod(0o700)
    (shared / "model" / "weights.bin").write_bytes(b"w")
    (shared / "model" / "weights.bin").chmod(0o600)
    outside.write_text("not yours")
    outside.chmod(0o600)
    (shared / "link").symlink_to(outside)
    os.mkfifo(shared / "fifo", 0o600)
    theirs = shared / "theirs"
    theirs.mkdir(mode=0o700)
    (theirs / "inner.txt").write_text("")
    (theirs / "inner.txt").chmod(0o600)
    if os.geteuid() == 0:
        os.chown(theirs, 61000, 61000)
    assert scratch.open_to_workers(shared) >= 2
    assert (shared / "model").stat().st_mode & 0o777 == 0o755
    assert (shared / "model" / "weights.bin").stat().st_mode & 0o777 == 0o644
    assert outside.stat().st_mode & 0o777 == 0o600, "a link was followed"
    assert (shared / "fifo").stat().st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert (theirs / "inner.txt").stat().st_mode & 0o777 == 0o600, "a worker's folder was entered"


def test_a_killed_test_process_is_an_error_and_not_cached():
    data = _data(events=[], finished=True, stopped="the test process ended abnormally (exit status -9)")
    r = report.build_results(META, data, "", runner.GradeOptions(), 1.0)
    assert r["extra_data"]["status"] == "error" and r["extra_data"]["complete"] is False
    assert "exit status -9" in r["output"]


def test_a_results_file_is_written_even_when_reading_fails(tmp_path):
    out = runner.grade(tmp_path / "missing.zip", runner.GradeOptions(out_dir=tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "missing" / "results.json").read_text())
    assert saved == out and out["score"] == 0.0 and out["extra_data"]["status"] == "error"


# ---- the mount plan ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux only")
def test_the_mount_plan_hides_the_tests_and_keeps_python(tmp_path):
    tests, out, work, shared = (tmp_path / n for n in ("tests", "out", "work", "shared"))
    for d in (tests, out, work, shared):
        d.mkdir()
    spec = sandbox.SandboxSpec(work_dir=work, shared_dirs=[shared], hidden=[tests, out, pathlib.Path("/")], uid=61234)
    assert sandbox.tool("mount").startswith(sandbox.TRUSTED_BIN) and sandbox.tool("no-such-tool") is None
    plan = sandbox.mount_plan(spec)
    hidden = dict(plan.hide)
    kept = dict(plan.keep)
    assert pathlib.Path("/") not in hidden, "never cover the root"
    assert hidden[pathlib.Path("/tmp").resolve()] == "1777"
    assert any(sandbox._under(sandbox.REPO_DIR, h) for h in hidden), "the repository (solutions/, tests/) is covered"
    assert kept.get(work.resolve()) is True and kept.get(shared.resolve()) is True
    assert any(sandbox._under(sandbox.PACKAGE_DIR, k) and not rw for k, rw in kept.items())
    assert not any(sandbox._under(tests.resolve(), k) for k in kept) and not any(sandbox._under(out.resolve(), k) for k in kept)
    script = sandbox.setup_script(plan, spec)
    assert "setpriv --reuid=61234 --regid=61234 --clear-groups --no-new-privs" in script
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in script and "/usr/local" not in script.split("cd ")[0]
    assert f"{sandbox.tool('mount')} -n -o remount,bind,ro" in script, "the host is read-only in the sandbox"
    assert script.strip().endswith("wait $!")


def test_the_worker_environment_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = sandbox.worker_env(sandbox.SandboxSpec(work_dir=tmp_path), "process")
    assert "HF_TOKEN" not in env and "HTTPS_PROXY" not in env
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLM_COURSE_PROFILE"] == "toy" and env["HOME"] == str(tmp_path)


def test_worker_limits_cannot_be_raised_back(tmp_path):
    code = textwrap.dedent('''
        import resource, sys
        from vlm_course.grading.worker import apply_limits
        apply_limits({"cpu_s": 50, "memory_mb": 1024, "nproc": 10, "fsize_mb": 2})
        print(resource.getrlimit(resource.RLIMIT_FSIZE), resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU))
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (2**40, 2**40))
        except ValueError:
            print("refused")
    ''')
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split("\n")
    assert out[0] == f"(2097152, 2097152) ({1024 * 2**20}, {1024 * 2**20}) (50, 55)"
    assert out[1] == "refused"


def test_warnings_filters_of_the_trusted_side_apply():
    reply = {"ok": None, "warnings": [{"category": "DeprecationWarning", "message": "old", "filename": "x.py", "lineno": 3}]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        remote._answer(None, reply, "test")
    assert [(w.category, str(w.message), w.lineno) for w in caught] == [(DeprecationWarning, "old", 3)]


ADOPTION = '''
import os, signal, subprocess, sys, time
from vlm_course.grading import forkserver, sandbox

assert sandbox.become_subreaper()

def handler(request, fds):
    os.write(fds[0], f"{os.getppid()} {sorted(map(int, os.listdir('/proc/self/fd')))}".encode())
    os.close(fds[0])
    time.sleep(request["sleep"])
    return request["code"]

client = forkserver.start_worker_server(handler)
out = []
for sleep, code in ((0, 3), (30, 0)):
    r, w = os.pipe()
    proc = client.fork("worker", {"sleep": sleep, "code": code}, [w])
    os.close(w)
    out.append(os.read(r, 4096).decode())
    os.close(r)
    if sleep:
        try:
            proc.wait(timeout=0.5)
            out.append("no timeout")
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        out.append(str(proc.wait(timeout=10)))
    else:
        out.append(str(proc.wait(timeout=10)))
client.close()
out.append(str(client.server.returncode))
print(os.getpid(), "|".join(out))
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork servers need Linux")
def test_a_fork_server_hands_each_process_to_the_asker(tmp_path):
    """A forked process is adopted by the process that asked for it (it waits for it and kills it like a
    child of its own) and holds no descriptor of the server's but those passed to it."""
    done = subprocess.run([sys.executable, "-c", ADOPTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    me, report = done.stdout.split(maxsplit=1)
    first, code, second, killed, server = report.strip().split("|")
    assert first.split()[0] == me and second.split()[0] == me, "adopted by the asker"
    assert first.split(maxsplit=1)[1] == "[0, 1, 2, 3, 4]", first  # 0-2, the pipe passed in, listdir's own
    assert (code, killed, server) == ("3", "-9", "0")


def test_a_fork_server_preloads_what_the_tests_import(tmp_path):
    from vlm_course.grading import forkserver

    (tmp_path / "test_x.py").write_text("import os\nfrom transformers import CLIPModel\nfrom . import helper\n"
                                        "def test():\n    import numpy.linalg\n")
    (tmp_path / "test_broken.py").write_text("def (:\n")
    found = forkserver.imports_of([tmp_path / "test_x.py", tmp_path / "test_broken.py", tmp_path / "missing.py"])
    assert found == ["os", "transformers", "transformers:CLIPModel", "numpy.linalg"]


# ---- sandbox uid blocks ------------------------------------------------------------------------------


@pytest.fixture
def lock_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    path = tmp_path / "locks"
    monkeypatch.setattr(sandbox, "lock_dir_path", lambda: str(path))
    return path


def test_jobs_holding_uid_blocks_at_once_never_share_a_uid(lock_dir: pathlib.Path) -> None:
    with sandbox.uid_block(0) as a, sandbox.uid_block(0) as b, sandbox.uid_block(1) as c:
        assert len({a, b, c}) == 3
        assert {a, b, c} <= {sandbox.BASE_UID + sandbox.UID_BLOCK * k for k in range(sandbox.UID_BLOCKS)}
        assert a == sandbox.BASE_UID  # the preferred block when it is free
    with sandbox.uid_block(0) as again:  # given back at the end of the with
        assert again == sandbox.BASE_UID
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o700


def test_a_uid_block_held_by_another_process_is_skipped(lock_dir: pathlib.Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from vlm_course.grading import sandbox; "
         f"sandbox.lock_dir_path = lambda: {str(lock_dir)!r}\n"
         "with sandbox.uid_block(0) as u:\n print(u, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = int(holder.stdout.readline())
        with sandbox.uid_block(0) as mine:
            assert held == sandbox.BASE_UID and mine != held
    finally:
        holder.communicate("", timeout=30)
    with sandbox.uid_block(0) as freed:  # the holder's exit released its block
        assert freed == sandbox.BASE_UID


def test_uid_block_refuses_a_linked_lock_folder(lock_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    lock_dir.symlink_to(elsewhere)
    with pytest.raises(sandbox.SandboxUnavailable, match="not a plain folder.*remove it and grade again"):
        with sandbox.uid_block():
            pass
    assert not list(elsewhere.iterdir())


def test_uid_block_refuses_a_lock_folder_others_can_write(lock_dir: pathlib.Path) -> None:
    lock_dir.mkdir(mode=0o700)
    lock_dir.chmod(0o777)
    with pytest.raises(sandbox.SandboxUnavailable, match="mode 0700 .*mode 777"):
        with sandbox.uid_block():
            pass
