"""Mutation testing of the core: every surviving mutant is a test we are missing.

``python tools/mutants.py [--all] [--budget SECONDS] [GROUP ...]`` (what ``nox -s mutants`` runs).

Why a small runner of our own rather than mutmut or cosmic-ray: we want each module group run
against *its own* test files only, a time budget per group on a 2-core machine, and each
mutant tested by just the tests that execute its line. So, per group:

1. one run of the group's tests under coverage with a per-test context tells, for each line,
   which tests execute it (this run is also the baseline: it must pass);
2. the AST of each module yields mutants (operator swaps, comparison flips, boolean and
   constant tweaks, negated conditions, ``return None``, deleted call statements,
   ``break``/``continue`` swaps);
3. a mutant on a line no test executes survives without running anything; any other is
   written into a shadow copy of ``src/`` and the tests covering its line run in a process
   forked from this one (pytest, Hypothesis, trio... already imported, xtasks not), with
   ``-x -q`` and a timeout. A failing run kills the mutant, a timeout counts apart; a mutant
   those tests miss must then pass all of the group's tests to count as a survivor.

Hypothesis runs derandomized, without its example database, and the planner's properties at
a tenth of their example counts (``PLANNER_EXAMPLES_SCALE``), so one run is repeatable.
By default mutants are sampled (fixed seed) until the group's budget is spent; ``--all``
tests every one. Survivors listed in ``tests/EQUIVALENT_MUTANTS.md`` are counted as
equivalent, not as survivors.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
EQUIVALENTS = ROOT / "tests" / "EQUIVALENT_MUTANTS.md"


@dataclasses.dataclass(frozen=True)
class Group:
    """Modules mutated together, and the test files that concern them."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    budget: float  # seconds of mutant runs in a default (sampled) run
    keyword: str = ""  # a pytest -k expression, if the test files hold other stores' tests


GROUPS: dict[str, Group] = {
    "planner": Group(
        modules=(
            "xtasks/_planner.py",
            "xtasks/_lifecycle.py",
            "xtasks/_ready.py",
            "xtasks/_graph.py",
            "xtasks/_catch_up.py",
            "xtasks/_run_state.py",
        ),
        tests=(
            "tests/test_planner.py",
            "tests/test_planner_mutants.py",
            "tests/test_jitter.py",
        ),
        budget=360,
    ),
    "runtime": Group(
        modules=("xtasks/_runtime.py", "xtasks/_recorder.py", "xtasks/_claimer.py"),
        tests=(
            "tests/test_runtime.py",
            "tests/test_recorder_order.py",
            "tests/test_recorder_health.py",
            "tests/test_claimer.py",
            "tests/test_scheduler.py",
            "tests/test_store_faults.py",
            "tests/test_store_faults_property.py",
            "tests/test_lease_reaped.py",
            "tests/test_task_base_exceptions.py",  # what a body raises, cancels, or exits with
            "tests/test_executor_adapters.py",  # executors that report their starts
            "tests/test_state_sync.py",  # other replicas' pause, resume and cancel, applied
            "tests/test_scheduler_exits.py",  # how the scheduler's block ends
            "tests/test_audit.py",  # timer lag, stats
            "tests/test_loop_monitor.py",  # stats and health while running
            # alerts still queued at exit get at least a second
            "tests/test_alert_delivery.py::test_draining_at_exit_is_bounded_by_the_shutdown_grace",
        ),
        budget=240,
    ),
    "triggers": Group(
        modules=("xtasks/_triggers.py",),
        tests=(
            "tests/test_triggers.py",
            "tests/test_triggers_edges.py",
            # the short-interval warning of an Every built for a seed or YAML entry
            "tests/test_hints.py::test_short_interval_warns_at_the_users_own_line",
            "tests/test_hints.py::test_short_interval_from_a_seed_entry_names_the_task_at_its_line",
            "tests/test_hints.py::test_short_interval_from_yaml_names_the_task_at_the_files_line",
        ),
        budget=150,
    ),
    "sqlite": Group(
        modules=("xtasks/stores/sqlite.py", "xtasks/stores/_sql.py"),
        tests=(
            "tests/stores/test_sqlite.py",
            "tests/stores/test_contract.py",
            "tests/stores/test_open_store.py",  # URLs, options and their errors
            "tests/stores/test_run_feed.py",
            "tests/test_store_faults.py",  # another process holding the lock, a full disk
            "tests/test_state_sync.py",  # two store objects on one file
            "tests/test_catch_up_restart.py",
            "tests/test_published_after_commit.py",
            "tests/test_lease_reaped.py",
            "tests/test_task_faults.py",  # results and errors bounded on their way in
            "tests/test_record_fields.py",  # every field of a record through each column
        ),
        budget=210,
        keyword="not memory and not postgres and not redis",  # the other backends' cases
    ),
}

#: Libraries the forked test runs import, loaded once here. Never xtasks: the child must import
#: it from the shadow copy that holds the mutant; nor pytest plugins, which pytest must import
#: itself to rewrite their asserts.
WARM = (
    "pytest",
    "_pytest.python",
    "hypothesis",
    "hypothesis.strategies",
    "anyio",
    "trio",
    "pydantic",
    "pluggy",
    "croniter",
    "yaml",
    "sqlite3",
    "httpx",
    "schemathesis",
)

LOG_CALLS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical"})


# --- mutants ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One change to one module: the ``index``-th node of ``ast.walk`` order, changed by ``op``."""

    module: str  # relative to src/
    line: int
    index: int
    op: str
    change: str

    @property
    def key(self) -> str:
        """How a survivor is printed, and how tests/EQUIVALENT_MUTANTS.md names it."""
        return f"src/{self.module}:{self.line}: {self.change}"


SWAP_BIN: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}
SWAP_CMP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
SYMBOL: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """Nodes no mutant may touch: annotations, docstrings, ``if TYPE_CHECKING:`` blocks,
    ``__all__``, and logging calls (what a log line says is not behaviour these tests pin)."""
    skip: set[int] = set()

    def drop(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            drop(node.returns)
            for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                drop(arg.annotation)
            for a in (node.args.vararg, node.args.kwarg):
                if a is not None:
                    drop(a.annotation)
        if isinstance(node, ast.AnnAssign):
            drop(node.annotation)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            drop(node)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            drop(node)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                drop(body[0])
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_CALLS
            and isinstance(node.func.value, ast.Name)
            and "log" in node.func.value.id.lower()
        ):
            drop(node)
    return skip


def _ops(node: ast.AST) -> Iterator[tuple[str, str]]:
    """The mutations that apply to ``node``: (op name, how the change reads)."""
    if isinstance(node, ast.BinOp) and type(node.op) in SWAP_BIN:
        new = SWAP_BIN[type(node.op)]
        yield "binop", f"`{SYMBOL[type(node.op)]}` -> `{SYMBOL[new]}`"
    elif isinstance(node, ast.AugAssign) and type(node.op) in SWAP_BIN:
        new = SWAP_BIN[type(node.op)]
        yield "augop", f"`{SYMBOL[type(node.op)]}=` -> `{SYMBOL[new]}=`"
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_CMP:
        flip = SWAP_CMP[type(node.ops[0])]
        yield "cmp", f"`{SYMBOL[type(node.ops[0])]}` -> `{SYMBOL[flip]}`"
    elif isinstance(node, ast.BoolOp):
        was, now = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        yield "boolop", f"`{was}` -> `{now}`"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", f"`not {_short(node.operand)}` -> `{_short(node.operand)}`"
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "const", f"`{node.value}` -> `{not node.value}`"
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        yield "const", f"`{node.value!r}` -> `{node.value + 1!r}`"
    elif isinstance(node, ast.If | ast.While | ast.IfExp) and not isinstance(
        node.test, ast.Compare | ast.BoolOp | ast.UnaryOp | ast.Constant
    ):
        yield "negate", f"`if {_short(node.test)}` -> `if not {_short(node.test)}`"
    elif isinstance(node, ast.Return) and node.value is not None:
        if not isinstance(node.value, ast.Constant):  # a constant has its own mutant
            yield "return", f"`return {_short(node.value)}` -> `return None`"
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        yield "delete", f"`{_short(node.value)}` deleted"
    elif isinstance(node, ast.Break):
        yield "break", "`break` -> `continue`"
    elif isinstance(node, ast.Continue):
        yield "continue", "`continue` -> `break`"


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def mutants_of(module: str) -> list[Mutant]:
    """Every mutant of one module, in source order."""
    tree = ast.parse((SRC / module).read_text())
    skip = _skipped_nodes(tree)
    found = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        for op, change in _ops(node):
            found.append(Mutant(module, getattr(node, "lineno", 0), index, op, change))
    return sorted(found, key=lambda m: (m.line, m.index))


def apply(mutant: Mutant, source: str) -> str:
    """The module's source with ``mutant`` applied."""
    tree = ast.parse(source)
    node = next(n for i, n in enumerate(ast.walk(tree)) if i == mutant.index)
    op = mutant.op
    if op in ("binop", "augop"):
        node.op = SWAP_BIN[type(node.op)]()  # type: ignore[attr-defined]
    elif op == "cmp":
        node.ops = [SWAP_CMP[type(node.ops[0])]()]  # type: ignore[attr-defined]
    elif op == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()  # type: ignore[attr-defined]
    elif op == "not":
        _replace(tree, node, node.operand)  # type: ignore[attr-defined]
    elif op == "const":
        value = node.value  # type: ignore[attr-defined]
        node.value = (not value) if isinstance(value, bool) else value + 1  # type: ignore[attr-defined]
    elif op == "negate":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)  # type: ignore[attr-defined]
    elif op == "return":
        node.value = ast.Constant(value=None)  # type: ignore[attr-defined]
    elif op == "delete":
        _replace(tree, node, ast.Pass())
    elif op == "break":
        _replace(tree, node, ast.Continue())
    elif op == "continue":
        _replace(tree, node, ast.Break())
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                setattr(parent, field, [new if v is old else v for v in value])
                return
    raise LookupError(old)


def equivalents() -> set[str]:
    """The survivors tests/EQUIVALENT_MUTANTS.md explains, one a line:
    ``- `` src/...:N: change `` — why`` (a code span in double backticks)."""
    if not EQUIVALENTS.exists():
        return set()
    found = set()
    for line in EQUIVALENTS.read_text().splitlines():
        match = re.match(r"- `` (src/[^:]+:\d+): (.+?) `` — ", line)
        if match:
            found.add(f"{match[1]}: {match[2]}")
    return found


# --- running tests ---------------------------------------------------------------------------


def _pytest_args(group: Group) -> list[str]:
    args = ["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--no-header"]
    # plugins (anyio, hypothesis...) are imported before pytest starts: no assert rewriting
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    return [*args, "-k", group.keyword] if group.keyword else args


def _test_files(group: Group) -> list[str]:
    return [t for t in group.tests if (ROOT / t.split("::")[0]).exists()]


def coverage_map(group: Group, work: Path) -> dict[tuple[str, int], set[str]]:
    """Run the group's tests once under coverage (the baseline); which tests run each line."""
    rc = work / "coveragerc"
    rc.write_text(
        f"[run]\ndata_file = {work / '.coverage'}\ndynamic_context = test_function\n"
        f"source = {SRC / 'xtasks'}\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest"]
        + _pytest_args(group)
        + _test_files(group),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"the baseline fails, fix it first:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    print(f"  baseline: {time.monotonic() - started:.0f} s under coverage", flush=True)
    from coverage import CoverageData

    data = CoverageData(basename=str(work / ".coverage"))
    data.read()
    lines: dict[tuple[str, int], set[str]] = {}
    for module in group.modules:
        path = str(SRC / module)
        for lineno, contexts in (data.contexts_by_lineno(path) or {}).items():
            lines[(module, lineno)] = set(contexts)
    if not lines:
        sys.exit(f"the baseline ran no line of {', '.join(group.modules)} under {SRC}")
    return lines


def node_ids(contexts: set[str], group: Group) -> list[str] | None:
    """The pytest node ids of coverage's ``tests.test_x.[Class.]test_y`` contexts, or None
    (run every test of the group) if a context is the import of a module."""
    ids = set()
    for ctx in contexts:
        if not ctx:
            return None  # executed at import (module level): every test depends on it
        parts = ctx.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            path = "/".join(parts[:cut]) + ".py"
            if (ROOT / path).exists():
                ids.add(path + "::" + "::".join(parts[cut:]))
                break
        else:
            return None
    order = {t: i for i, t in enumerate(group.tests)}
    return sorted(ids, key=lambda n: (order.get(n.split("::")[0], 99), n))


def _env() -> dict[str, str]:
    # this checkout's src first: an editable install of another checkout (a worktree's
    # main) would otherwise be what the baseline imports, and measures
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "PLANNER_EXAMPLES_SCALE": "0.1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "XTASKS_MUTANTS": "1",
    }


def spawn(shadow: Path, args: list[str], log: Path) -> int:
    """Start pytest in a child forked from this process, on the shadow ``src``; its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 3  # the child
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.dont_write_bytecode = True
        sys.path.insert(0, str(shadow))
        os.chdir(ROOT)
        import hypothesis
        import pytest

        phases = [hypothesis.Phase.explicit, hypothesis.Phase.generate]  # no shrinking
        hypothesis.settings.register_profile(
            "mutants",
            derandomize=True,
            database=None,
            deadline=None,
            print_blob=False,
            phases=phases,
            report_multiple_bugs=False,
        )
        hypothesis.settings.load_profile("mutants")
        code = int(pytest.main(args))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def outcome_of(status: int) -> str:
    """``killed``, ``survived`` or ``error`` from a finished child's wait status."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "survived"
    if code == 5:  # no test collected: a broken selection, not a kill
        return "error"
    return "killed"


def run_forked(shadow: Path, args: list[str], timeout: float, log: Path) -> str:
    """Run pytest once in a forked child and wait for it (the unmutated check)."""
    pid = spawn(shadow, args, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return outcome_of(status)
        time.sleep(0.02)
    _kill(pid)
    return "timeout"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


FAILED = re.compile(r"^FAILED ([^\s\[]+)", re.MULTILINE)  # the node id, without parameters


@dataclasses.dataclass
class Slot:
    """One shadow copy of ``src/`` and the mutant being tested in it, if any."""

    shadow: Path
    log: Path
    mutant: Mutant | None = None
    ids: list[str] | None = None
    pid: int = 0
    deadline: float = 0.0
    whole_group: bool = False  # the second stage: a survivor must pass every test


@dataclasses.dataclass
class Tally:
    generated: int = 0
    tested: int = 0
    killed: int = 0
    survived: int = 0
    timeouts: int = 0
    equivalent: int = 0
    errors: int = 0


def run_group(
    name: str,
    group: Group,
    *,
    every: bool,
    budget: float | None,
    seed: int,
    count: int | None,
    match: list[str],
    jobs: int,
) -> Tally:
    """Mutate one group's modules, ``jobs`` mutants at a time; print survivors as
    file:line: change."""
    print(f"\n== {name}: {', '.join(group.modules)}", flush=True)
    print(
        f"   tests: {' '.join(_test_files(group))}{' -k ' + group.keyword if group.keyword else ''}"
    )
    work = Path(tempfile.mkdtemp(prefix=f"mutants-{name}-"))
    slots = []
    try:
        for i in range(jobs):
            shadow = work / f"src{i}"
            shutil.copytree(SRC, shadow, ignore=shutil.ignore_patterns("__pycache__"))
            slots.append(Slot(shadow, work / f"log{i}"))
        covered = coverage_map(group, work)
        clean = time.monotonic()
        everything = _pytest_args(group) + _test_files(group)
        check = run_forked(slots[0].shadow, everything, 600, work / "log")
        clean = time.monotonic() - clean
        timeout = max(15.0, 3 * clean) * (1 + (jobs - 1) / 2)  # the jobs share the cores
        print(f"  unmutated forked run: {clean:.1f} s; a mutant's timeout: {timeout:.0f} s")
        if check != "survived":
            sys.exit(f"the unmutated tests fail in a forked run:\n{(work / 'log').read_text()}")
        mutants = [m for module in group.modules for m in mutants_of(module)]
        tally = Tally(generated=len(mutants))
        order = [m for m in mutants if not match or any(x in m.key for x in match)]
        if not every:
            random.Random(seed).shuffle(order)
        if count is not None:
            order = order[:count]
        limit = budget if budget is not None else group.budget
        known = equivalents()
        survivors: list[tuple[Mutant, str]] = []
        kills: Counter[str] = Counter()  # tests that killed mutants: tried first next time
        originals = {m: (SRC / m).read_text() for m in group.modules}
        started = time.monotonic()

        def record(mutant: Mutant, outcome: str, why: str) -> None:
            if outcome == "survived" and mutant.key in known:
                tally.equivalent += 1
                print(f"  equivalent (listed): {mutant.key}", flush=True)  # a stale entry shows
            elif outcome == "survived":
                tally.survived += 1
                survivors.append((mutant, why))
                print(f"  survived: {mutant.key}   [{why}]", flush=True)  # long runs: as found
            elif outcome == "killed":
                tally.killed += 1
            elif outcome == "timeout":
                tally.timeouts += 1
            else:
                tally.errors += 1
                survivors.append((mutant, "pytest collected nothing (error)"))

        def finish(slot: Slot, outcome: str) -> None:
            assert slot.mutant is not None
            module = slot.mutant.module
            (slot.shadow / module).write_text(originals[module])
            record(slot.mutant, outcome, "the group's tests pass")
            slot.mutant = None

        pending = iter(order)

        def next_to_run() -> tuple[Mutant, set[str]] | None:
            """The next mutant some test executes (those no test runs survive here)."""
            while not (not every and count is None and time.monotonic() - started > limit):
                mutant = next(pending, None)
                if mutant is None:
                    return None
                tally.tested += 1
                if tally.tested % 25 == 0:
                    spent = time.monotonic() - started
                    print(f"  ... {tally.tested} of {len(order)} in {spent:.0f} s", flush=True)
                contexts = covered.get((mutant.module, mutant.line))
                if contexts:
                    return mutant, contexts
                record(mutant, "survived", "no test runs this line")
            return None

        while True:
            for slot in slots:  # start a mutant in every free slot
                if slot.mutant is not None:
                    continue
                chosen = next_to_run()
                if chosen is None:
                    break
                mutant, contexts = chosen
                ids = node_ids(contexts, group)
                if ids is not None:
                    ids.sort(key=lambda n: -kills[n])  # stable: the group's order otherwise
                (slot.shadow / mutant.module).write_text(apply(mutant, originals[mutant.module]))
                slot.mutant, slot.ids, slot.whole_group = mutant, ids, ids is None
                selection = ids if ids is not None else _test_files(group)
                slot.pid = spawn(slot.shadow, _pytest_args(group) + selection, slot.log)
                slot.deadline = time.monotonic() + timeout
            busy = [s for s in slots if s.mutant is not None]
            if not busy:
                break
            time.sleep(0.02)
            for slot in busy:
                done, status = os.waitpid(slot.pid, os.WNOHANG)
                if not done:
                    if time.monotonic() > slot.deadline:
                        _kill(slot.pid)
                        finish(slot, "timeout")
                    continue
                outcome = outcome_of(status)
                if outcome == "killed":
                    with contextlib.suppress(OSError):
                        kills.update(FAILED.findall(slot.log.read_text(errors="replace")))
                if outcome == "survived" and not slot.whole_group:
                    # coverage's per-test contexts are approximate (fixtures, async frames):
                    # a survivor must pass every test of the group
                    slot.whole_group = True
                    slot.pid = spawn(slot.shadow, everything, slot.log)
                    slot.deadline = time.monotonic() + timeout
                    continue
                finish(slot, outcome)
        for mutant, why in sorted(survivors, key=lambda s: (s[0].module, s[0].line)):
            print(f"{mutant.key}   [{why}]")
        sampled = "every mutant" if tally.tested == tally.generated else "a seeded sample"
        print(
            f"  {name}: generated {tally.generated}, tested {tally.tested} ({sampled}), "
            f"killed {tally.killed}, survived {tally.survived}, timeouts {tally.timeouts}, "
            f"equivalent {tally.equivalent}, errors {tally.errors}, "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
        return tally
    finally:
        for slot in slots:
            if slot.mutant is not None:
                _kill(slot.pid)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--all", action="store_true", help="every mutant, no time budget")
    parser.add_argument("--budget", type=float, help="seconds of mutant runs per group")
    parser.add_argument(
        "--limit",
        type=int,
        help="test the first N mutants of the sample, whatever the time (to compare two runs)",
    )
    parser.add_argument(
        "--match",
        action="append",
        default=[],
        help="only mutants whose 'file:line: change' contains this (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=17, help="of the sample (default 17)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="mutants tested at once (default: one per core)",
    )
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    opts = parser.parse_args(argv)
    names = opts.groups or list(GROUPS)
    if unknown := [n for n in names if n not in GROUPS]:
        parser.error(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    if opts.list:
        for name in names:
            for module in GROUPS[name].modules:
                for m in mutants_of(module):
                    print(m.key)
        return 0
    os.environ.update(_env())
    for lib in WARM:
        with contextlib.suppress(ImportError):
            __import__(lib)
    assert not any(m == "xtasks" or m.startswith("xtasks.") for m in sys.modules), "xtasks warm"
    tallies = {
        n: run_group(
            n,
            GROUPS[n],
            every=opts.all,
            budget=opts.budget,
            seed=opts.seed,
            count=opts.limit,
            match=opts.match,
            jobs=max(1, opts.jobs),
        )
        for n in names
    }
    print("\n| group | generated | tested | killed | survived | timeouts | equivalent |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, t in tallies.items():
        print(
            f"| {n} | {t.generated} | {t.tested} | {t.killed} | {t.survived} | "
            f"{t.timeouts} | {t.equivalent} |"
        )
    total = sum(t.tested for t in tallies.values())
    alive = sum(t.survived + t.errors for t in tallies.values())
    print(f"surviving: {alive} of {total} tested ({100 * alive / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
