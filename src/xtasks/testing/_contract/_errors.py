"""Closing and failing: close is idempotent, and every backend error is a ``StoreError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._errors import StoreError
from ..._runs import (
    AuditRecord,
    RunStatus,
    TaskRecord,
    TaskState,
)
from ._support import (
    _LONG_TTL,
    _T0,
    StoreFactory,
    _at,
    _check,
    _fail,
    _prefix,
    _replicas,
    _require,
    _require_record,
    _require_task,
    _run,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@_check
async def check_close_idempotent(make_store: StoreFactory) -> None:
    """``close()`` twice is harmless, and what was written before it is kept.

    Verifies that a second ``close()`` raises nothing, and that a store object made and
    opened afterwards (for an in-process backend, possibly the same object, opened again)
    reads back the run, the claim and the task state written before the close.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    record = _run(f"{prefix}-run", task, RunStatus.SUCCEEDED, result=[1, 2])
    state = TaskRecord(state=TaskState.PAUSED, last_fire=_at(7), consecutive_failures=1)
    store = await make_store(lease_ttl=_LONG_TTL)
    await store.open()
    try:
        await store.save_run(record)
        await store.claim_fire(task, _at(7), "replica-a")
        await store.change_task_state(task, state)
    finally:
        await store.close()
    for attempt in ("second", "third"):
        try:
            await store.close()
        except Exception as exc:  # noqa: BLE001 - a check reports every failure the same way
            _fail(f"a {attempt} close() raised {exc!r}; close() must be idempotent")
    async with _replicas(make_store, 1) as (again,):
        _require_record("after close() and a new open()", record, await again.get_run(record.id))
        won = await again.claim_fire(task, _at(7), "replica-b")
        _require(won is False, "a claim made before close() was forgotten")
        _require_task("after close() and a new open()", state, await again.load_task(task))
    await again.close()


class _Opaque:
    """A result no codec knows."""


@_check
async def check_errors_are_store_errors(make_store: StoreFactory) -> None:
    """Failures surface as :class:`xtasks.StoreError`, never as a driver's exception.

    Verifies that:

    - a run whose ``result`` the backend may not encode (NaN, infinity, a set, bytes, a
      datetime, an arbitrary object) is either saved or refused with ``StoreError``, and
      the store works normally afterwards (no transaction left open);
    - after ``close()``, every method (the audit trail's too) raises ``StoreError``: not a driver error, and not
      a silent success on released resources.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    odd_results: list[object] = [
        float("nan"),
        float("inf"),
        {1, 2},
        b"\x00\xff",
        _T0,
        _Opaque(),
    ]
    problems: list[str] = []
    store = await make_store(lease_ttl=_LONG_TTL)
    await store.open()
    try:
        for i, result in enumerate(odd_results):
            record = _run(f"{prefix}-odd-{i}", task, RunStatus.SUCCEEDED, result=result)
            for method in ("save_run", "get_run"):
                try:
                    if method == "save_run":
                        await store.save_run(record)
                    else:
                        await store.get_run(record.id)
                except StoreError:
                    pass
                except Exception as exc:  # noqa: BLE001 - reported below
                    problems.append(f"{method} with result {result!r} raised {exc!r}")
        fine = _run(f"{prefix}-fine", task, RunStatus.SUCCEEDED, result={"ok": True})
        await store.save_run(fine)
        _require_record("after the odd results", fine, await store.get_run(fine.id))
    finally:
        await store.close()
    _require(not problems, "driver errors leaked: " + "; ".join(problems))

    record = _run(f"{prefix}-closed", task, RunStatus.RUNNING)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "claim_fire": lambda: store.claim_fire(task, _T0, "replica-a"),
        "save_run": lambda: store.save_run(record),
        "save_runs": lambda: store.save_runs([record]),
        "renew_leases": lambda: store.renew_leases("replica-a", [record.id]),
        "reap_lost": store.reap_lost,
        "get_run": lambda: store.get_run(record.id),
        "list_runs": lambda: store.list_runs(task=task),
        "load_task": lambda: store.load_task(task),
        "save_task": lambda: store.save_task(task, TaskRecord()),
        "change_task_state": lambda: store.change_task_state(task, TaskRecord()),
        "task_state_changes": lambda: store.task_state_changes(0),
        "add_audit": lambda: store.add_audit(
            AuditRecord(at=_T0, actor="a", action="run", task=task, outcome="ok")
        ),
        "list_audit": lambda: store.list_audit(task=task),
    }
    for name, call in calls.items():
        try:
            value = await call()
        except StoreError:
            continue
        except Exception as exc:  # noqa: BLE001 - reported below
            kind = type(exc)
            problems.append(f"{name}() raised {kind.__module__}.{kind.__qualname__}: {exc}")
        else:
            problems.append(f"{name}() returned {value!r}")
    _require(
        not problems,
        "after close(), every call must raise xtasks.StoreError: " + "; ".join(problems),
    )
