"""Cases of the grading tests: a tiny fake exercise, hostile submissions, and a way to run the grader.

The fake exercise keeps most grading runs fast: its hidden test file checks a trivial
``CLIPImageSearch`` contract (no torch), so a worker starts in well under a second. Each hostile
submission breaks one rule and would earn points only by cheating.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-7f1c2a"  # known to the hidden tests and the instructor's reference only
TOKEN = "hf_canary4d9e27b1"  # in the grader's environment (HF_TOKEN) during the hostile class run

HIDDEN_TESTS = f'''
import os

import pytest

SECRET = "{SECRET}"


@pytest.mark.points(2)
def test_index_and_search(image_search_cls):
    s = image_search_cls("toy")
    assert s.index_images(["a", "b", "c"]) == 3
    assert s.search("b") == [{{"index": 1, "score": 1.0}}]


@pytest.mark.points(1)
def test_rejects_bad_top_k(image_search_cls):
    with pytest.raises(ValueError, match="top_k"):
        image_search_cls("toy").search("b", top_k=0)


@pytest.mark.points(1)
def test_knows_the_secret(image_search_cls):
    """secret() returns the instructor's secret"""
    assert image_search_cls("toy").secret() == SECRET


@pytest.mark.points(1)
def test_save_writes_one_file(image_search_cls, tmp_path):
    """save() writes exactly one index file"""
    s = image_search_cls("toy")
    s.index_images(["a"])
    (tmp_path / "saved").mkdir()
    s.save(tmp_path / "saved" / "index.txt")
    listing = os.listdir(tmp_path / "saved")
    (tmp_path / "log.txt").write_text(f"saved: {{listing}}")  # the trusted side writes where a worker could plant a link
    assert listing == ["index.txt"]
    assert (tmp_path / "saved" / "index.txt").read_text() == "a"


def test_without_points_is_not_graded():
    raise AssertionError("tests without a points marker must not run when grading")
'''
FULL_POINTS = 5.0

GOOD = f'''
class CLIPImageSearch:
    def __init__(self, model_name):
        self.items = []

    def index_images(self, items):
        self.items += list(items)
        return len(items)

    def search(self, query, top_k=5):
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {{top_k}}")
        return [{{"index": self.items.index(query), "score": 1.0}}]

    def secret(self):
        return "{SECRET}"

    def save(self, target):
        with open(target, "w") as f:
            f.write("".join(self.items))
'''

BROKEN_CLASS = '''
class CLIPImageSearch:
    def __init__(self, model_name):
        pass

    def index_images(self, items):
        raise NotImplementedError("index_images")

    def search(self, query, top_k=5):
        raise NotImplementedError("search")

    def secret(self):
        raise NotImplementedError("secret")

    def save(self, target):
        raise NotImplementedError("save")
'''


INDEXES_ONLY = BROKEN_CLASS.replace('''        raise NotImplementedError("index_images")''', '''        return len(items)''')


def hostile_sources(ctx: dict) -> dict[str, dict[str, str]]:
    """name -> {file name: source}; ``ctx`` holds absolute paths and the port the sources aim at."""
    c = {k: repr(str(v)) for k, v in ctx.items()}
    return {
        "good": {"image_search.py": GOOD},
        "empty": {},
        "loop_import": {"image_search.py": "while True:\n    pass\n" + GOOD},
        "loop_method": {"image_search.py": GOOD.replace("        if top_k < 1:", "        while True:\n            pass\n        if top_k < 1:")},
        "fork_bomb": {"image_search.py": textwrap.dedent('''
            import os, time
            children = 0
            try:
                while True:  # unbounded without a process limit
                    if os.fork() == 0:
                        time.sleep(120)
                        os._exit(0)
                    children += 1
            except OSError as exc:
                raise RuntimeError(f"fork bomb stopped after {children} processes: {exc}")
        ''')},
        "memory_hog": {"image_search.py": "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 2**20))\n"},
        "exit_import": {"image_search.py": "import os\nos._exit(0)\n" + GOOD},
        "sys_exit_import": {"image_search.py": "import sys\nsys.exit(0)\n" + GOOD},
        "network": {"image_search.py": textwrap.dedent(f'''
            import socket
            try:
                with socket.create_connection(("127.0.0.1", {ctx["port"]}), timeout=5) as s:
                    GOT = s.recv(100).decode()
            except OSError as exc:
                GOT = exc

            class CLIPImageSearch:
                def __init__(self, name):
                    pass

                def secret(self):
                    if isinstance(GOT, Exception):
                        raise GOT
                    return GOT
        ''')},
        "reads_secrets": {"image_search.py": textwrap.dedent(f'''
            import re
            FOUND, ERRORS = {{}}, []
            for path in ({c["hidden_test"]}, {c["solution"]}, {c["sibling"]}):
                try:
                    FOUND[path] = open(path).read()
                except OSError as exc:
                    ERRORS.append(f"{{type(exc).__name__}}: {{path}}")
            if {c["sibling"]} in FOUND:  # copy another learner's work
                exec(FOUND[{c["sibling"]}])
            else:
                class CLIPImageSearch:
                    def __init__(self, name):
                        pass

                    def secret(self):
                        text = FOUND.get({c["hidden_test"]})
                        if text is None:
                            raise PermissionError("could not read: " + "; ".join(ERRORS))
                        return re.search(r'SECRET = "(.*)"', text).group(1)
        ''')},
        "conftest": {
            "image_search.py": BROKEN_CLASS,
            "conftest.py": textwrap.dedent('''
                import pytest

                @pytest.hookimpl(wrapper=True)
                def pytest_runtest_makereport(item, call):
                    report = yield
                    report.outcome = "passed"
                    return report
            '''),
            "sitecustomize.py": "import builtins\nbuiltins.print = None\n",
            "evil.pth": "import os; os.system('touch /tmp/pwned')\n",
            "pytest.ini": "[pytest]\naddopts = -p no:warnings\n",
            "pyproject.toml": "[tool.pytest.ini_options]\naddopts = '--co'\n",
            "setup.cfg": "[tool:pytest]\n",
            "tox.ini": "[pytest]\n",
            "extra/helper.py": "x = 1\n",
        },
        "flood": {"image_search.py": textwrap.dedent('''
            import sys
            for _ in range(40):
                sys.stdout.write("spam " * 100_000 + "\\n")
                sys.stderr.write("eggs " * 100_000 + "\\n")

            class CLIPImageSearch:
                def __init__(self, name):
                    pass

                def index_images(self, items):
                    print("x" * 1_000_000)
                    return 0
        ''')},
        "monkeypatch": {"image_search.py": textwrap.dedent(f'''
            import builtins, contextlib
            import pytest
            import vlm_course.grading.report as report
            pytest.raises = lambda *a, **k: contextlib.nullcontext()
            report.build_results = lambda *a, **k: {{"score": 100}}
            try:
                with open({c["grader_file"]}, "a") as f:
                    f.write("\\nSCORE = 100\\n")
            except OSError:
                pass

            class AlwaysEqual:
                def __eq__(self, other):
                    return True

            class CLIPImageSearch:
                def __init__(self, name):
                    pass

                def index_images(self, items):
                    return AlwaysEqual()

                def search(self, query, top_k=5):
                    return AlwaysEqual()

                def secret(self):
                    return AlwaysEqual()
        ''')},
        "fake_results": {"image_search.py": textwrap.dedent(f'''
            import json, os
            fake = {{"score": 100, "tests": [], "extra_data": {{"status": "ok"}}}}
            for path in ("results.json", "../results.json", {c["own_results"]}, {c["good_results"]}, {c["gradebook"]}):
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                    with open(path, "w") as f:
                        json.dump(fake, f)
                except OSError:
                    pass
        ''') + BROKEN_CLASS},
        "daemon": {"image_search.py": textwrap.dedent(f'''
            import os, sys, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", {c["marker"]}])
                os._exit(0)
            time.sleep(0.5)
        ''') + BROKEN_CLASS},
    }


def deeper_hostile_sources(ctx: dict) -> dict[str, dict[str, str]]:
    """The second attack round: each source goes after one class of weakness of the trusted side."""
    c = {k: repr(str(v)) for k, v in ctx.items()}
    return {
        # root-side test code must never follow what the worker planted (write, list), and root must never
        # change the ownership of anything while the worker swaps folders and links under it
        "planted_links": {"image_search.py": INDEXES_ONLY.replace('''    def save(self, target):
        raise NotImplementedError("save")''', f'''    def save(self, target):
        import os, threading
        saved = os.path.dirname(target)
        tmp = os.path.dirname(saved)
        os.rmdir(saved)
        os.symlink({c["hidden_dir"]}, saved)
        os.symlink({c["canary_file"]}, os.path.join(tmp, "log.txt"))

        def flip(folder):
            while True:
                for name in ("x", "y"):
                    path = os.path.join(folder, name)
                    try:
                        os.mkdir(path)
                        os.rmdir(path)
                        os.symlink({c["canary_file"]}, path)
                        os.unlink(path)
                    except OSError:
                        pass

        for folder in (os.getcwd(), tmp):
            threading.Thread(target=flip, args=(folder,), daemon=True).start()''')},
        "fifo": {"image_search.py": INDEXES_ONLY.replace('''    def save(self, target):
        raise NotImplementedError("save")''', '''    def save(self, target):
        import os
        os.mkfifo(target)''')},
        "huge_reply": {"image_search.py": BROKEN_CLASS.replace('''        raise NotImplementedError("index_images")''',
                                                                '''        return [0] * 3_000_000''')},
        "host_writes": {"image_search.py": textwrap.dedent(f'''
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            SHM = libc.shmget({ctx["ipc_key"]}, 4096, 0o1666)  # IPC_CREAT | 0666: System V shared memory
            WROTE = []
            for folder in ("/run/lock", "/var/tmp", "/dev/shm", "/tmp", "/usr/local/bin", "/etc", "/dev/mqueue"):
                try:
                    with open(os.path.join(folder, {c["marker"]}), "w") as f:
                        f.write("left for a classmate")
                    WROTE.append(folder)
                except OSError:
                    pass
        ''') + BROKEN_CLASS},
        "deep_chain": {"image_search.py": textwrap.dedent('''
            import os
            for start in (os.getcwd(), "/tmp"):
                os.chdir(start)
                for _ in range(3000):
                    os.mkdir("d")
                    os.chdir("d")
                with open("payload", "wb") as f:
                    f.write(b"x" * 1_000_000)
        ''') + BROKEN_CLASS},
        "guess_secret": {"image_search.py": GOOD.replace(f'return "{SECRET}"', 'return "my-guess"')},
        # a worker forked from a fork server inspects what it inherited: file descriptors (a way back to
        # the server?), capabilities, and memory holding the hidden tests' secret or the grader's token
        "inherits": {"image_search.py": BROKEN_CLASS.replace('        raise NotImplementedError("secret")', INHERITS)},
    }


INHERITS = textwrap.indent(textwrap.dedent(f'''
    import gc, json, os, sys
    needle = "".join([{SECRET[:4]!r}, {SECRET[4:]!r}])  # never whole in the source or its constants
    token = "".join([{TOKEN[:5]!r}, {TOKEN[5:]!r}])
    found = set()
    for obj in gc.get_objects():
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
        for item in items:
            if isinstance(item, (str, bytes)):
                text = item if isinstance(item, str) else item.decode("latin-1")
                found.update(name for name, value in (("secret", needle), ("token", token)) if value in text)
    with open("/proc/self/environ", "rb") as f:
        if token.encode() in f.read() or token in str(dict(os.environ)):
            found.add("token in the environment")
    fds = {{}}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{{fd}}").split(":")[0]
        except OSError:
            pass
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    report = {{"found": sorted(found), "fds": sorted(fds.values()), "uid": os.getuid(),
              "caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
              "no_new_privs": status["NoNewPrivs"].strip(), "test_modules": [m for m in sys.modules if "test_" in m]}}
    raise ValueError("REPORT " + json.dumps(report))
''').strip("\n"), " " * 8)


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Archives and folders that cannot be graded, each for its own reason (name -> path)."""
    folder.mkdir(parents=True, exist_ok=True)

    def zip_of(name: str, data: str = GOOD, method: int = zipfile.ZIP_STORED) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            zf.writestr("image_search.py", data)
        return path

    def patch(path: Path, fn) -> Path:
        raw = bytearray(path.read_bytes())
        fn(raw, raw.find(b"PK\x01\x02"))
        path.write_bytes(bytes(raw))
        return path

    def encrypt(raw, cd):
        raw[6] |= 1
        raw[cd + 8] |= 1

    def method(raw, cd):
        raw[8] = raw[cd + 10] = 99

    def corrupt(raw, cd):
        for k in range(30 + len("image_search.py") + 5, 30 + len("image_search.py") + 45):
            raw[k] ^= 0x5A

    paths = {
        "encrypted": patch(zip_of("encrypted.zip"), encrypt),
        "method": patch(zip_of("method.zip"), method),
        "corrupt": patch(zip_of("corrupt.zip", GOOD * 20, zipfile.ZIP_DEFLATED), corrupt),
    }
    odd = Path(os.fsdecode(bytes(folder) + b"/odd\xff"))
    odd.mkdir()
    (odd / "image_search.py").write_text(GOOD)
    Path(os.fsdecode(bytes(odd) + b"/n\xffme\x1b[31m.txt")).write_text("")
    paths["odd"] = odd
    like_zip = folder / "looks_like.zip"
    like_zip.mkdir()
    (like_zip / "image_search.py").write_text(GOOD)
    paths["looks_like"] = like_zip
    paths["Good-2"] = zip_of("Good.zip")  # named like the folder "good" but for case: gets a name of its own
    return paths


def write_submissions(folder: Path, sources: dict[str, dict[str, str]]) -> dict[str, Path]:
    """Write each submission as a folder (``good`` also as a zip holding a folder)."""
    paths = {}
    for name, files in sources.items():
        sub = folder / name
        sub.mkdir(parents=True)
        for fname, text in files.items():
            (sub / fname).parent.mkdir(parents=True, exist_ok=True)
            (sub / fname).write_text(text)
        paths[name] = sub
    if "good" in sources:
        with zipfile.ZipFile(folder / "good_zip.zip", "w") as zf:
            for fname, text in sources["good"].items():
                zf.writestr(f"alice/{fname}", text)
            zf.writestr("alice/__MACOSX/._image_search.py", "junk")
        paths["good_zip"] = folder / "good_zip.zip"
    return paths


def grade_cli(*args: str | Path, timeout: float = 600, tmpdir: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``vlm-course grade ARGS`` in a fresh process (its subreaper duty stays out of this test process);
    ``tmpdir``: where its per-submission folders go (to check that nothing is left there); ``env``: more
    environment variables."""
    cmd = [sys.executable, "-m", "vlm_course.cli", "grade", "--quiet", *map(str, args)]
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if not k.startswith("VLM_COURSE_GRADING")}
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def run_bundle(bundle: Path, root: Path, files: dict[str, str]) -> dict:
    """Unpack ``bundle`` into ``root/source``, put ``files`` in ``root/submission``, run run_autograder."""
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # extractall drops the modes
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777 or 0o644)
    for name, text in files.items():
        (root / "submission" / name).write_text(text)
    env = dict(os.environ, VLM_AUTOGRADER_ROOT=str(root), VLM_PYTHON=sys.executable)
    env = {k: v for k, v in env.items() if not k.startswith("VLM_COURSE_GRADING")}
    done = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def results_of(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


def write_hidden_tests(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_image_search.py").write_text(HIDDEN_TESTS)
    return folder
