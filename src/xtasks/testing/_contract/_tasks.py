"""Task state: stored states round-trip, batches of them too, and the grid anchor is set once."""

from __future__ import annotations

from ..._runs import (
    TaskRecord,
    TaskState,
)
from ._support import (
    StoreFactory,
    _at,
    _check,
    _prefix,
    _replicas,
    _require_task,
)


@_check
async def check_task_state_round_trip(make_store: StoreFactory) -> None:
    """:class:`~xtasks.abc.TaskRecord` round trips, one task independent of another.

    Verifies that each :class:`~xtasks.TaskState`, ``consecutive_failures``, ``alerting``
    and ``last_fire`` (aware UTC, or ``None``) saved through one store object loads equal
    through another; that a second ``save_task`` replaces every field (counters back to
    zero); and that an unknown task loads as ``None``.
    """
    prefix = _prefix()
    records = {
        f"{prefix}-{state}": TaskRecord(
            state=state, last_fire=_at(i), consecutive_failures=i + 1, alerting=bool(i % 2)
        )
        for i, state in enumerate(TaskState)
    }
    records[f"{prefix}-default"] = TaskRecord()
    async with _replicas(make_store, 2) as (a, b):
        for task, record in records.items():
            await a.save_task(task, record)
        for task, record in records.items():
            _require_task(f"load_task({task!r})", record, await b.load_task(task))
        task, record = next(iter(records.items()))
        reset = TaskRecord(last_fire=record.last_fire)
        await b.save_task(task, reset)
        _require_task("after a second save_task", reset, await a.load_task(task))
        _require_task("an unknown task", None, await a.load_task(f"{prefix}-unknown"))


@_check
async def check_task_batches_and_anchor(make_store: StoreFactory) -> None:
    """``save_tasks``/``load_tasks`` agree with the single calls; the anchor is set once.

    Verifies that a batch saved through one store object loads equal, by name, through
    another (unknown names are left out), and that a later save never moves a stored
    ``anchor``: the first replica to register a task fixes its grid for the fleet.
    """
    prefix = _prefix()
    first, later = _at(1), _at(2)
    records = {
        f"{prefix}-{i}": TaskRecord(last_fire=_at(i), consecutive_failures=i, anchor=first)
        for i in range(3)
    }
    async with _replicas(make_store, 2) as (a, b):
        await a.save_tasks(records)
        loaded = await b.load_tasks([*records, f"{prefix}-unknown"])
        if loaded.keys() != records.keys():
            raise AssertionError(
                f"load_tasks returned {sorted(loaded)}, expected {sorted(records)}"
            )
        for task, record in records.items():
            _require_task(f"load_tasks()[{task!r}]", record, loaded[task])
        task = next(iter(records))
        await b.save_task(task, TaskRecord(anchor=later, last_fire=_at(0)))
        stored = await a.load_task(task)
        if stored is None or stored.anchor != first:
            raise AssertionError(
                f"a second save_task moved the anchor of {task!r}: {first} -> "
                f"{stored.anchor if stored else None}; the first anchor must stay"
            )
