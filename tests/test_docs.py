"""The documentation builds without a warning, and every code example in it runs.

Examples follow one convention (README.md and docs/**/*.md):

- a fenced ```python block is a complete program, run as ``python <file>`` in a fresh
  temporary directory, which must exit 0 within 60 s;
- a block whose first line is ``# (continued)`` is appended to the previous python block
  of the same page, and the whole is run instead;
- ``<!-- docs-test: compile-only -->`` on the line before a block (one that needs the
  reader's database, a cluster or a server that runs forever): it is compiled, and its
  ``import`` lines are executed, so a renamed name still fails;
- ``<!-- docs-test: file NAME -->`` before a block (any language): not run, but written to
  ``NAME`` in the temporary directory of the page's following blocks.

Examples see only the alerts add-on's plugin (``XTASKS_PLUGINS=alerts``), whatever else the
environment has installed.

The programs run in parallel (each in its own directory, in a process forked from one that
imported xtasks, anyio and FastAPI once), all started the first time one of these tests
asks for its result, so the whole takes about as long as the slowest example plus the CPU
the examples need, not the sum of their run times.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TIMEOUT = 60.0
WORKERS = 6

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(
    r"^\s*<!--\s*docs-test:\s*(?P<what>compile-only|file\s+(?P<name>\S+))\s*-->\s*$"
)
_CONTINUED = "# (continued)"


@dataclass
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language and text."""

    line: int
    lang: str
    text: str
    marker: str = ""  # "", "compile-only" or "file"
    file_name: str = ""


@dataclass
class Example:
    """One program to check: a python block with the blocks it continues, and its page's files."""

    page: Path
    lines: list[int]
    source: str
    compile_only: bool
    files: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``README.md:123``, or ``docs/x.md:10+24`` for a block continued by another."""
        return f"{self.page.relative_to(ROOT)}:{'+'.join(map(str, self.lines))}"


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown page, with the docs-test marker just before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            raw = lines[j]
            body.append(raw[indent:] if raw[:indent].strip() == "" else raw.lstrip())
            j += 1
        if j == len(lines):
            raise AssertionError(f"line {i + 1}: a ``` block that never closes")
        block = Block(line=i + 1, lang=opening["lang"].lower(), text="\n".join(body) + "\n")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        if marker is not None:
            block.marker = "compile-only" if marker["what"] == "compile-only" else "file"
            block.file_name = marker["name"] or ""
        blocks.append(block)
        i = j + 1
    return blocks


def page_examples(page: Path, text: str | None = None) -> list[Example]:
    """The programs of one page: each python block, joined to what it continues."""
    examples: list[Example] = []
    files: dict[str, str] = {}
    for block in parse_blocks(page.read_text(encoding="utf-8") if text is None else text):
        if block.marker == "file":
            files[block.file_name] = block.text
            continue
        if block.lang not in ("python", "py"):
            continue
        if block.text.lstrip().startswith(_CONTINUED):
            if not examples:
                raise AssertionError(
                    f"{page.relative_to(ROOT)}:{block.line}: '{_CONTINUED}' with no python block "
                    "before it on the page"
                )
            previous = examples.pop()
            examples.append(
                Example(
                    page,
                    [*previous.lines, block.line],
                    previous.source + block.text,
                    previous.compile_only or block.marker == "compile-only",
                    dict(files),
                )
            )
            continue
        examples.append(
            Example(page, [block.line], block.text, block.marker == "compile-only", dict(files))
        )
    return examples


EXAMPLES = [example for page in PAGES for example in page_examples(page)]


def _env() -> dict[str, str]:
    """The test's environment without its XTASKS_* settings (plugins, config, tokens), and
    with only the alerts add-on's plugin (the email and webhook alerters): a plugin installed
    in the developer's environment (the example one, say) must not join the examples."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XTASKS_") or "_TEST_" in k}
    env["XTASKS_PLUGINS"] = "alerts"
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


def _imports_only(source: str) -> str:
    """The ``import`` and ``from ... import`` statements of a program, in order."""
    tree = ast.parse(source)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    kept = [n for n in nodes if not getattr(n, "level", 0) and _installed_or_ours(n)]
    return "\n".join(ast.unparse(n) for n in kept) + "\n"


def _installed_or_ours(node: ast.Import | ast.ImportFrom) -> bool:
    """False for an import of a library this environment lacks (APScheduler, Celery and
    taskiq in coming-from.md): such a block is checked for syntax only. Our own packages
    are always imported, so a renamed xtasks name still fails."""
    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
    top = (name or "").split(".")[0]
    return top in ("xtasks", "xtasks_fastapi", "xtasks_alerts") or (
        importlib.util.find_spec(top) is not None
    )


# The examples' programs start from a warm process: importing xtasks, anyio, FastAPI and
# uvicorn costs about a second of CPU each time, paid once here instead of once per example.
# A "zygote" process imports them, then forks one child per program; each child runs its
# program as ``python <file>`` would (``__main__``, its directory first on sys.path, its
# own stdio, non-daemon threads joined and atexit run at the end) and exits with its code.
_ZYGOTE = r"""
import atexit, importlib, json, os, runpy, sys, threading, traceback
for name in ("xtasks", "xtasks.testing", "xtasks.events", "anyio", "anyio._backends._asyncio",
             "trio", "sqlite3", "fastapi", "uvicorn", "httpx", "xtasks_fastapi", "xtasks_alerts",
             "pydantic", "yaml", "croniter"):
    try:
        importlib.import_module(name)
    except Exception:
        pass
replies = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

def reply(message):
    os.write(replies, (json.dumps(message) + "\n").encode())

def wait(job, pid):
    _, status = os.waitpid(pid, 0)
    reply({"job": job, "code": os.waitstatus_to_exitcode(status)})

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            os.chdir(request["cwd"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.close(replies)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False, buffering=1)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
            sys.argv = [request["script"]]
            sys.path[0] = request["cwd"]
            try:
                runpy.run_path(request["script"], run_name="__main__")
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
            except BaseException as exc:  # shown from the program's own frames
                tb = exc.__traceback__
                while tb is not None and tb.tb_frame.f_code.co_filename != request["script"]:
                    tb = tb.tb_next
                traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
            threading._shutdown()
            atexit._run_exitfuncs()
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    reply({"job": request["job"], "pid": pid})
    threading.Thread(target=wait, args=(request["job"], pid), daemon=True).start()
"""


class Zygote:
    """Runs programs in children forked from one warm process (see ``_ZYGOTE``)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        self._lock = threading.Lock()
        self._jobs = itertools.count()
        self._pids: dict[int, int] = {}
        self._codes: dict[int, int] = {}
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="docs-zygote", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._changed:
                if "pid" in message:
                    self._pids[message["job"]] = message["pid"]
                else:
                    self._codes[message["job"]] = message["code"]
                self._changed.notify_all()
        with self._changed:  # the zygote is gone: wake every waiter
            self._changed.notify_all()

    def run(self, script: Path, cwd: Path, out: Path, err: Path, timeout: float) -> int | None:
        """The program's exit code, or ``None`` if it was killed after ``timeout`` seconds."""
        job = next(self._jobs)
        request = {"job": job, "script": str(script), "cwd": str(cwd)}
        request |= {"stdout": str(out), "stderr": str(err)}
        with self._lock:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        with self._changed:
            if self._changed.wait_for(
                lambda: job in self._codes or self._process.poll() is not None, timeout
            ):
                if job in self._codes:
                    return self._codes.pop(job)
                raise AssertionError(f"the examples' runner died (exit {self._process.poll()})")
            pid = self._pids.get(job)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with self._changed:
            self._changed.wait_for(lambda: job in self._codes, 10)
            self._codes.pop(job, None)
        return None

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=10)
        assert self._process.stdout is not None
        self._process.stdout.close()


def _run_plain(script: Path, cwd: Path, out: Path, err: Path, timeout: float) -> int | None:
    """``python <script>`` in a fresh interpreter (where fork is not available)."""
    with out.open("w") as stdout, err.open("w") as stderr:
        try:
            return subprocess.run(
                [sys.executable, str(script)],
                cwd=cwd,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            return None


def check_example(example: Example, zygote: Zygote | None = None) -> str:
    """Run (or compile and import) one example; return what went wrong, or "" if nothing."""
    with tempfile.TemporaryDirectory(prefix="xtasks-docs-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        for name, text in example.files.items():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            compile(example.source, example.id, "exec")
        except SyntaxError as exc:
            return f"does not compile: {exc}"
        program = _imports_only(example.source) if example.compile_only else example.source
        script = workdir / "_example.py"
        script.write_text(program, encoding="utf-8")
        out, err = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        run = zygote.run if zygote is not None else _run_plain
        code = run(script, workdir, out, err, TIMEOUT)
        output = (
            f"--- stdout ---\n{out.read_text()[-2000:]}\n--- stderr ---\n{err.read_text()[-4000:]}"
        )
        if code is None:
            return f"did not end within {TIMEOUT:.0f} s\n{output}"
        if code != 0:
            what = "its imports failed" if example.compile_only else "it failed"
            return (
                f"{what} (exit {code}):\n{output}\n"
                f"--- the program ---\n{textwrap.indent(program, '    ')}"
            )
        return ""


def build_site() -> str:
    """``mkdocs build --strict`` into a temporary directory; what went wrong, or ""."""
    with tempfile.TemporaryDirectory(prefix="xtasks-site-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", tmp],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = done.stdout + done.stderr
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    if done.returncode != 0 or warnings:
        return f"mkdocs build --strict: exit {done.returncode}\n" + (
            "\n".join(warnings) or output[-4000:]
        )
    return ""


@pytest.fixture(scope="session")
def doc_checks(request: pytest.FixtureRequest) -> dict[str, Future[str]]:
    """Start every selected check at once (site build and examples), one future per test id."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if isinstance(item, pytest.Function) and _is_doc_check(item)
    }
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="docs-check")
    futures: dict[str, Future[str]] = {}
    if "site" in selected:
        futures["site"] = pool.submit(build_site)
    examples = [example for example in EXAMPLES if example.id in selected]
    zygote = Zygote() if examples and hasattr(os, "fork") else None

    def close() -> None:
        pool.shutdown(wait=True, cancel_futures=True)
        if zygote is not None:
            zygote.close()

    request.addfinalizer(close)
    for example in examples:
        futures[example.id] = pool.submit(check_example, example, zygote)
    return futures


def _is_doc_check(item: pytest.Function) -> bool:
    return (
        item.module is not None and item.module.__name__ == __name__ and hasattr(item, "callspec")
    )


def _result(doc_checks: dict[str, Future[str]], key: str) -> str:
    # Every check was started together: waiting here covers the ones queued before it.
    return doc_checks[key].result(timeout=TIMEOUT * (len(doc_checks) // WORKERS + 2))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("what", ["site"], ids=["site"])
def test_site_builds_without_warnings(doc_checks: dict[str, Future[str]], what: str) -> None:
    problem = _result(doc_checks, what)
    assert not problem, problem


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_code_example_runs(doc_checks: dict[str, Future[str]], example: Example) -> None:
    problem = _result(doc_checks, example.id)
    assert not problem, f"{example.id}: {problem}"


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_stay_in_the_repository(page: Path) -> None:
    """A relative link names a file of the repository: a clone has everything it points to."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https://..., mailto:, or an anchor of the page itself
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, (
        f"{page.relative_to(ROOT)} links outside the repository or to nothing: {broken}"
    )


def test_the_reference_lists_every_public_name_of_xtasks() -> None:
    """docs/reference/xtasks.md lists the names one by one, grouped: a new one must join."""
    import xtasks

    page = (ROOT / "docs" / "reference" / "xtasks.md").read_text(encoding="utf-8")
    listed = re.findall(r"^::: xtasks\.(\w+)\s*$", page, flags=re.MULTILINE)
    assert sorted(listed) == sorted(xtasks.__all__), (
        f"missing: {sorted(set(xtasks.__all__) - set(listed))}; "
        f"not public: {sorted(set(listed) - set(xtasks.__all__))}"
    )


def test_the_parser_follows_the_convention() -> None:
    """Markers, continuations and files are read as the convention says."""
    page = textwrap.dedent(
        """\
        <!-- docs-test: file config.yaml -->

        ```yaml
        tasks: {}
        ```

        ```python
        x = 1
        ```

        ```python
        # (continued)
        assert x == 1
        ```

        <!-- docs-test: compile-only -->
        ```python
        import xtasks
        ```

        ```bash
        echo not run
        ```
        """
    )
    blocks = parse_blocks(page)
    assert [(b.line, b.lang, b.marker, b.file_name) for b in blocks] == [
        (3, "yaml", "file", "config.yaml"),
        (7, "python", "", ""),
        (11, "python", "", ""),
        (17, "python", "compile-only", ""),
        (21, "bash", "", ""),
    ]
    examples = page_examples(ROOT / "docs" / "_parser_case.md", page)
    assert [(e.id, e.compile_only) for e in examples] == [
        ("docs/_parser_case.md:7+11", False),
        ("docs/_parser_case.md:17", True),
    ]
    assert examples[0].files == {"config.yaml": "tasks: {}\n"}
    assert _imports_only("import json\nfrom os import path\nx = 1\n") == (
        "import json\nfrom os import path\n"
    )
    # a library this environment lacks is left out (syntax only); ours never is
    assert _imports_only("import not_installed_lib\nfrom xtasks import Task\n") == (
        "from xtasks import Task\n"
    )
