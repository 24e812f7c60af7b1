"""Grading records: Gradescope ``results.json``, the class ``gradebook.csv`` and the terminal summary.

``results.json`` follows Gradescope's autograder format (``score``, ``execution_time``, ``output``,
``tests[]`` with ``name``, ``score``, ``max_score``, ``status``, ``output``, ``visibility``);
everything else (hashes, grader version, status, sandbox protections) lives in ``extra_data``,
which Gradescope keeps without interpreting.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from vlm_course.grading import GRADER_VERSION

# the most serious first: the status of a submission is the first kind one of its events has
STATUSES = ("error", "timeout", "crashed", "protocol-error", "import-error", "missing", "daemon", "ok")
EVENT_STATUS = {"timeout": "timeout", "crash": "crashed", "protocol": "protocol-error", "import": "import-error",
                "missing": "missing", "daemon": "daemon"}
MAX_OUTPUT = 8000


def printable(text: str) -> str:
    """``text`` safe to show in a terminal, a CSV cell or JSON: undecodable bytes and control
    characters (terminal escapes, newlines in file names) become visible escapes."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: no formula (``=``, ``+``, ``-``, ``@``...) and no control characters."""
    text = printable(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that readers see the old file or the new one, never a half-written one."""
    _write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fmt(x: float) -> str:
    return f"{round(x, 3):g}"


def _test_passed(t: dict) -> bool:
    phases = t.get("phases") or {}
    return phases.get("setup") == "passed" and phases.get("call") == "passed" and phases.get("teardown", "passed") == "passed"


def _status(events: list[dict], extra_errors: list[str]) -> tuple[str, list[str]]:
    """The submission's status (its most serious event) and the details, the most serious first: the
    first detail is the reason of the status (the summary table shows it)."""
    found = [("error", str(e)) for e in extra_errors]
    for e in events:
        where = f"{e['module']}.py: " if e.get("module") else ""
        found.append((EVENT_STATUS.get(e.get("kind"), "ok"), printable(f"{where}{e.get('detail', '')}")))
    found.sort(key=lambda kd: STATUSES.index(kd[0]))  # stable: events of one kind keep their order
    status = found[0][0] if found else "ok"
    details: list[str] = []
    for _kind, text in found:
        if text not in details:
            details.append(text)
    return status, details


def _sandbox_line(protections: dict | None) -> str:
    if not protections:
        return "Sandbox: no worker was started."
    lim = protections.get("limits", {})
    return (f"Sandbox: {protections.get('mode')} (network: {protections.get('network')}, files: {protections.get('filesystem')}, "
            f"uid {protections.get('uid')}, processes: {protections.get('pids')}; limits: {lim.get('cpu_s')} s CPU, "
            f"{lim.get('memory_mb')} MB memory, {lim.get('nproc')} processes, {lim.get('fsize_mb')} MB per file)"
            + (f". WEAKER SANDBOX: it lacks {'; '.join(protections['lacks'])}." if protections.get("lacks") else "."))


def build_results(meta: dict, data: dict | None, log_tail: str, options, elapsed: float) -> dict:
    """Gradescope results from the plugin's report ``data`` (None: the test process left no report).

    With ``options.withhold`` (hidden tests) a failed test's visible output is its description and
    what the learner's own code did (``plugin.public_message``), never the assertion; the full
    messages go to ``extra_data.failures``, which Gradescope does not show to students."""
    withhold = bool(getattr(options, "withhold", False))
    visibility = getattr(options, "visibility", "visible")
    if data is None:
        message = f"the test process left no report; its last output:\n{log_tail[-3000:]}"
        results = error_results(meta, message, elapsed, visibility)
        if withhold:
            results["output"] = "Score: 0\nStatus: error\n  - the grader could not run the tests (the instructor sees why)"
        return results
    errors = [str(data["stopped"])] if data.get("stopped") else []
    public_errors = list(errors)
    collection = [f"test collection failed: {e}" for e in data.get("collection_errors") or []]
    if not data.get("tests") and not collection and not errors:
        collection.append(f"no test with a points marker ran; the test process said:\n{log_tail[-2000:]}")
    errors += collection
    public_errors += collection if not withhold else ["the grader could not run the tests (the instructor sees why)"] * bool(collection)
    finished = bool(data.get("finished"))
    tests, groups, failures, cases = [], {}, {}, {}
    for t in data.get("tests") or []:
        points = float(t.get("points", 0.0))
        ok = _test_passed(t)
        full_name = f"{t.get('group')}: {t.get('name')}"
        name = full_name
        if withhold and "[" in full_name:  # parametrize ids may spell out expected values: number the cases
            base = full_name.split("[", 1)[0]
            cases[base] = cases.get(base, 0) + 1
            name = f"{base}[case {cases[base]}]"
        message = t.get("message") or ""
        if not ok and "call" not in (t.get("phases") or {}) and not message:
            message = "not run: grading of this submission was stopped (time limit)" if not finished else "not run"
        if not ok and withhold:
            failures[name] = message if name == full_name else f"{full_name}\n{message}"
            message = "\n".join(x for x in (t.get("description"), t.get("public") or message) if x)
        output = message
        if t.get("output"):
            output += f"\n\n--- printed by the submission during this test ---\n{t['output']}"
        g = groups.setdefault(t.get("group", "tests"), {"score": 0.0, "max_score": 0.0})
        g["max_score"] += points
        g["score"] += points if ok else 0.0
        tests.append({
            "name": name,
            "score": points if ok else 0.0,
            "max_score": points,
            "status": "passed" if ok else "failed",
            "output": output.strip()[:MAX_OUTPUT],
            "visibility": visibility,
            "tags": [str(t.get("group"))],
        })
    status, details = _status(data.get("events") or [], errors)
    public_details = _status(data.get("events") or [], public_errors)[1]
    if meta.get("refused"):
        refused = f"refused files: {', '.join(meta['refused'][:10])}" + (" ..." if len(meta["refused"]) > 10 else "")
        details.append(refused)
        public_details.append(refused)
    score = sum(t["score"] for t in tests)
    max_score = sum(t["max_score"] for t in tests)
    lines = [f"Score: {_fmt(score)} / {_fmt(max_score)}"]
    lines += [f"  {g}: {_fmt(v['score'])} / {_fmt(v['max_score'])}" for g, v in groups.items()]
    lines.append(f"Status: {status}")
    lines += [f"  - {d}" for d in public_details]
    if meta.get("refused"):
        lines.append(f"Refused (not copied into the sandbox): {', '.join(meta['refused'][:30])}"
                     + (f" and {len(meta['refused']) - 30} more" if len(meta["refused"]) > 30 else ""))
    lines.append(f"Graded files: {', '.join(meta.get('files') or []) or 'none'}")
    lines.append(_sandbox_line(data.get("protections")))
    for module, text in (data.get("worker_output") or {}).items():
        if text.strip():
            lines.append(f"--- output of {module}.py (capped) ---\n{text.strip()}")
    extra = dict(meta)
    extra.update({
        "status": status, "details": details, "groups": groups, "sandbox": data.get("protections"),
        "complete": status != "error", "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    if withhold:
        extra["failures"] = failures
    return {
        "score": round(score, 6),
        "execution_time": round(elapsed, 1),
        "output": "\n".join(lines)[:4 * MAX_OUTPUT],
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": extra,
    }


def error_results(meta: dict, message: str, elapsed: float, visibility: str = "visible") -> dict:
    """A results file for a submission that could not be graded (score 0, status error)."""
    extra = dict(meta)
    extra.update({"status": "error", "details": [message], "groups": {}, "sandbox": None, "complete": False,
                  "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    extra.setdefault("grader_version", GRADER_VERSION)
    return {"score": 0.0, "execution_time": round(elapsed, 1), "output": f"Score: 0\nStatus: error\n  - {message}",
            "visibility": visibility, "stdout_visibility": "hidden", "tests": [], "extra_data": extra}


# ---- the class view ----------------------------------------------------------------------------------


def _groups(results: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in results:
        for g in (r.get("extra_data", {}).get("groups") or {}):
            seen.setdefault(g, None)
    return list(seen)


def gradebook_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    groups = _groups(results)
    header = ["submission", *groups, "total", "max_score", "status", "details",
              "submission_sha256", "tests_sha256", "grader_version", "source"]
    rows = []
    for r in results:
        extra = r.get("extra_data", {})
        g = extra.get("groups") or {}
        max_score = sum(t.get("max_score", 0.0) for t in r.get("tests", []))
        rows.append([csv_cell(c) for c in (
            str(extra.get("name", "?")),
            *[_fmt(g[k]["score"]) if k in g else "" for k in groups],
            _fmt(float(r.get("score", 0.0))), _fmt(max_score), str(extra.get("status", "?")),
            " | ".join(extra.get("details") or [])[:1000].replace("\n", " "),
            str(extra.get("submission_sha256", "")), str(extra.get("tests_sha256", "")),
            str(extra.get("grader_version", "")), str(extra.get("source", "")),
        )])
    return header, rows


def write_gradebook(path: Path, results: list[dict]) -> None:
    header, rows = gradebook_rows(results)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    _write_atomic(path, buf.getvalue())


REASON_WIDTH = 70


def reason(result: dict) -> str:
    """Why a submission is not ``ok``, in one line (its first detail), or '' for ``ok``."""
    extra = result.get("extra_data", {})
    if extra.get("status") == "ok":
        return ""
    details = extra.get("details") or ["(no reason recorded)"]
    line = printable(" ".join(str(details[0]).split()))
    return line if len(line) <= REASON_WIDTH else line[: REASON_WIDTH - 3] + "..."


def summary_table(results: list[dict]) -> str:
    """A plain-text table: one line per submission, points per group, total, status and the reason of
    every status but ``ok``."""
    groups = _groups(results)
    header = ["submission", *groups, "total", "status", "reason"]
    lines = [header]
    for r in results:
        extra = r.get("extra_data", {})
        g = extra.get("groups") or {}
        max_score = sum(t.get("max_score", 0.0) for t in r.get("tests", []))
        status = str(extra.get("status", "?")) + (" (cached)" if extra.get("skipped") else "")
        lines.append([
            printable(str(extra.get("name", "?"))),
            *[f"{_fmt(g[k]['score'])}/{_fmt(g[k]['max_score'])}" if k in g else "-" for k in groups],
            f"{_fmt(float(r.get('score', 0.0)))}/{_fmt(max_score)}", status, reason(r),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    left = {0, len(header) - 2, len(header) - 1}
    out = []
    for n, row in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
