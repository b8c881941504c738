"""The public surface is deliberate: a new or removed name shows up as a test diff."""

from __future__ import annotations

import ast
import importlib
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

import xtasks
import xtasks.abc
import xtasks.events
import xtasks.testing

SRC = Path(__file__).resolve().parent.parent / "src"

# --- the literal lists: adding or removing a public name is a visible edit here --------

XTASKS_ALL = [
    "At",
    "Attempt",
    "AttemptRecord",
    "AuditRecord",
    "AuditWriteError",
    "CatchUp",
    "ConfigError",
    "ConfigFileError",
    "Cron",
    "CronError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "ErrorInfo",
    "Every",
    "Mode",
    "Overlap",
    "PluginError",
    "Priority",
    "RunCause",
    "RunHandle",
    "RunRecord",
    "RunStatus",
    "RunTimeoutError",
    "Scheduler",
    "SchedulerStateError",
    "SchedulerStats",
    "SecretInConfigWarning",
    "ShortIntervalWarning",
    "StoreError",
    "Task",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "UnknownDependencyError",
    "XtasksError",
    "XtasksWarning",
    "hookimpl",
]

ABC_ALL = [
    "Alerter",
    "Clock",
    "Executor",
    "RunChanges",
    "RunTotals",
    "Store",
    "TaskRecord",
    "Trigger",
    "with_worker_traceback",
]

EVENTS_ALL = ["Alert", "AlertKind", "Event", "RunChanged", "TaskStateChanged"]

TESTING_ALL = [
    "EXECUTOR_CHECKS",
    "STORE_CHECKS",
    "ExecutorFactory",
    "FakeClock",
    "FaultyStore",
    "StoreFactory",
    "StoreMachine",
    "check_audit_trail",
    "check_claim_exclusivity",
    "check_claim_fires",
    "check_close_idempotent",
    "check_earlier_attempts",
    "check_errors_are_store_errors",
    "check_executor",
    "check_executor_cancel",
    "check_executor_concurrency",
    "check_executor_error",
    "check_executor_result",
    "check_executor_shutdown",
    "check_executor_timeout",
    "check_fencing",
    "check_last_fire_monotonic",
    "check_lease_expiry_and_reaping",
    "check_lease_renewal",
    "check_list_runs_order_and_paging",
    "check_list_runs_task_change",
    "check_reap_live_runs",
    "check_round_trip",
    "check_run_changes",
    "check_run_executor_and_worker",
    "check_run_totals",
    "check_store",
    "check_task_batches_and_anchor",
    "check_task_state_changes",
    "check_task_state_round_trip",
]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (xtasks, XTASKS_ALL),
        (xtasks.abc, ABC_ALL),
        (xtasks.events, EVENTS_ALL),
        (xtasks.testing, TESTING_ALL),
    ],
    ids=["xtasks", "xtasks.abc", "xtasks.events", "xtasks.testing"],
)
def test_all_is_exactly_the_pinned_list(module: object, expected: list[str]) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == expected
    for name in names:  # every listed name resolves, without a deprecation warning
        assert getattr(module, name) is not None


def test_all_lists_every_public_name_of_the_package() -> None:
    public = sorted(n for n in vars(xtasks) if not n.startswith("_") and n not in _SUBMODULES)
    assert xtasks.__all__ == sorted(public)


# Submodules, and the `from __future__ import annotations` feature object.
_SUBMODULES = {"abc", "events", "stores", "testing", "cli", "hookspecs", "annotations"}


def test_design_names_are_exported() -> None:
    design = {
        "Scheduler",
        "Task",
        "Every",
        "Cron",
        "At",
        "Priority",
        "RunRecord",
        "RunStatus",
        "XtasksError",
    }
    assert design <= set(xtasks.__all__)


def test_every_error_derives_from_xtasks_error() -> None:
    errors = [getattr(xtasks, n) for n in xtasks.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, xtasks.XtasksError) for e in errors)


def test_every_warning_derives_from_xtasks_warning_and_one_filter_silences_them() -> None:
    found = [getattr(xtasks, n) for n in xtasks.__all__ if n.endswith("Warning")]
    assert found and all(issubclass(w, xtasks.XtasksWarning) for w in found)
    assert issubclass(xtasks.XtasksWarning, UserWarning)  # shown by default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=xtasks.XtasksWarning)
        xtasks.Every(seconds=1)  # a short interval warns, and the one filter silences it


def test_abc_docstring_says_what_each_interface_is_for() -> None:
    doc = xtasks.abc.__doc__ or ""
    for name in xtasks.abc.__all__:
        role = "func" if name.islower() else "class"
        assert f":{role}:`{name}`" in doc, name


# --- names that moved: they keep working for one release, with a warning ---------------

MOVED = {
    "Alert": "xtasks.events",
    "AlertKind": "xtasks.events",
    "Event": "xtasks.events",
    "RunChanged": "xtasks.events",
    "TaskStateChanged": "xtasks.events",
    "TaskRecord": "xtasks.abc",
    "Trigger": "xtasks.abc",
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_still_works_and_warns_with_its_new_place(name: str) -> None:
    new_home = importlib.import_module(MOVED[name])
    assert name not in xtasks.__all__
    with pytest.warns(DeprecationWarning, match=rf"^xtasks\.{name} moved to {MOVED[name]}\.{name}"):
        old = getattr(xtasks, name)
    assert old is getattr(new_home, name)


def test_from_import_of_a_moved_name_still_works() -> None:
    with pytest.warns(DeprecationWarning, match=r"xtasks\.RunChanged moved to xtasks\.events"):
        from xtasks import RunChanged  # the old spelling, on purpose

    assert RunChanged is xtasks.events.RunChanged


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="RunCancelledError"):
        _ = xtasks.RunCancelledError


def test_old_names_of_the_run_cause_warn_and_still_work() -> None:
    record = xtasks.RunRecord(
        id="r",
        task="t",
        status=xtasks.RunStatus.QUEUED,
        cause=xtasks.RunCause.MANUAL,
        scheduled_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with pytest.warns(DeprecationWarning, match="RunRecord.cause"):
        assert record.trigger is xtasks.RunCause.MANUAL
    with pytest.warns(DeprecationWarning, match="xtasks.RunCause"):
        assert xtasks.TriggerKind is xtasks.RunCause


# --- the add-ons use only what any third party could ------------------------------------

ADD_ONS = sorted(p for p in SRC.glob("xtasks_*") if (p / "__init__.py").exists())


def _private_imports(path: Path) -> list[str]:
    """Every import in ``path`` that reaches into a private part of ``xtasks``, one per line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Del):
            dotted = _dotted(node)  # xtasks._planner.Planner, xtasks.stores._sql: reached
            modules = [dotted] if dotted.startswith("xtasks.") else []  # without an import
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules = [node.args[0].value]
        private = [m for m in modules if _is_private(m)]
        if private:
            found.append(f"{path.name}:{getattr(node, 'lineno', '?')}: {private[0]}")
    return found


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` for an attribute chain on a name; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_private(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "xtasks" and any(
        part.startswith("_") and not part.startswith("__") for part in parts[1:]
    )


def test_the_add_ons_are_found() -> None:
    assert {p.name for p in ADD_ONS} >= {"xtasks_fastapi", "xtasks_alerts"}


@pytest.mark.parametrize("package", ADD_ONS, ids=lambda p: p.name)
def test_add_ons_import_only_public_xtasks_api(package: Path) -> None:
    modules = sorted(package.rglob("*.py"))
    assert modules
    private = [hit for module in modules for hit in _private_imports(module)]
    assert private == [], "add-ons must use public xtasks API only:\n" + "\n".join(private)


@pytest.mark.parametrize("package", ADD_ONS, ids=lambda p: p.name)
def test_add_ons_do_not_import_each_other(package: Path) -> None:
    """Each add-on is a distribution that needs only the core: none imports another."""
    others = {p.name for p in ADD_ONS} - {package.name}
    found = []
    for module in sorted(package.rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            hits = [n for n in names if n.split(".")[0] in others]
            found += [f"{module.name}:{node.lineno}: {n}" for n in hits]
    assert found == [], "an add-on imports another:\n" + "\n".join(found)


def test_the_private_import_check_catches_every_spelling(tmp_path: Path) -> None:
    sample = tmp_path / "probe.py"
    sample.write_text(
        "import xtasks._runs\n"
        "from xtasks._events import Alert\n"
        "from xtasks import _errors\n"
        "from xtasks.stores._sql import x\n"
        "if TYPE_CHECKING:\n"
        "    from xtasks._scheduler import Scheduler\n"
        "importlib.import_module('xtasks._planner')\n"
        "planner = xtasks._lifecycle.Lifecycle\n"
        "from xtasks import Scheduler\n"
        "version = xtasks.__version__\n"
        "scheduler = xtasks.Scheduler()\n"
        "from xtasks.events import RunChanged\n"
        "from xtasks.stores.sqlite import SQLiteStore\n"
        "from ._local import y\n",
        encoding="utf-8",
    )
    hits = sorted(hit.split(": ", 1)[1] for hit in _private_imports(sample))
    assert hits == [
        "xtasks._errors",
        "xtasks._events",
        "xtasks._lifecycle",  # once as xtasks._lifecycle, once as xtasks._lifecycle.Lifecycle
        "xtasks._lifecycle.Lifecycle",
        "xtasks._planner",
        "xtasks._runs",
        "xtasks._scheduler",
        "xtasks.stores._sql",
    ]
