"""The audit trail: records round-trip and page newest first, per task and overall."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ..._runs import AuditRecord
from ._support import (
    StoreFactory,
    _at,
    _check,
    _fail,
    _field_differences,
    _not_utc,
    _prefix,
    _replicas,
    _require,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ...abc import Store


def _require_audit(what: str, expected: AuditRecord, actual: AuditRecord) -> None:
    """Fail unless ``actual`` equals ``expected`` field by field, ``at`` aware UTC."""
    if not isinstance(actual, AuditRecord):
        _fail(f"{what}: got {type(actual).__name__} {actual!r}, expected an AuditRecord")
    problems = _field_differences(expected, actual)
    if _not_utc(actual.at):
        problems.append(f"at: {actual.at!r} is not an aware UTC datetime")
    _require(not problems, f"{what}: audit record {expected.id!r} differs: " + "; ".join(problems))


@_check
async def check_audit_trail(make_store: StoreFactory) -> None:
    """``add_audit`` and ``list_audit`` keep the trail of manual actions, newest first.

    Verifies, through a second store object, that:

    - every field of an :class:`~xtasks.AuditRecord` round-trips: ``at`` aware, in UTC,
      to the microsecond; a non-ASCII, multi-line ``actor`` and ``detail``; a ``None``
      ``detail`` kept apart from ``""``;
    - records are listed by ``at`` descending, ties by insertion, later first, whatever
      the order they were added in;
    - ``task`` filters (an unknown task lists nothing); ``limit`` and ``offset`` slice
      that order (``limit=0``, an offset past the end: ``[]``) and ``limit`` defaults
      to 50;
    - without ``task``, the records of every task are listed in the same order (records
      other checks left on a shared backend are tolerated);
    - the records are still there after ``close()`` and a new ``open()`` (for an
      in-process backend, possibly the same object, opened again).
    """
    prefix = _prefix()
    x, y, z = (f"{prefix}-{name}" for name in "xyz")
    tie = _at(2)
    plan = [  # (name, task, at, actor, action, outcome, detail), in insertion order
        ("x1", x, tie, "manager-token@127.0.0.1", "run", "ok", "run-id-1"),
        ("y1", y, tie, "ops", "pause", "ok", None),
        ("x2", x, _at(1), "ops", "resume", "ok", ""),
        ("x3", x, _at(3), "ünïcode ✓ «opérateur»\nline two", "cancel", "ok", None),
        ("x4", x, tie, "ops", "run", "refused", "task 'x' is paused; resume it"),
        ("y2", y, _at(5), "ops", "run", "failed", 'boom: "quoted"\nünïcode'),
        ("x5", x, _at(0), "", "pause", "ok", None),
        ("x6", x, tie, "ops", "run", "ok", "run-id-6"),
        ("x7", x, tie + timedelta(microseconds=1), "ops", "resume", "ok", None),
    ]
    added = [
        AuditRecord(
            id=f"{prefix}-{name}",
            at=at,
            actor=actor,
            action=action,
            task=task,
            outcome=outcome,
            detail=detail,
        )
        for name, task, at, actor, action, outcome, detail in plan
    ]
    # 55 records of task z, added out of order: more than the default limit.
    added += [
        AuditRecord(
            id=f"{prefix}-z{i:02}",
            at=_at(-100 + (i * 17) % 55),
            actor="bulk",
            action="run",
            task=z,
            outcome="ok",
            detail=f"run-z{i:02}",
        )
        for i in range(55)
    ]
    position = {record.id: i for i, record in enumerate(added)}

    def newest_first(task: str | None) -> list[AuditRecord]:
        matches = [r for r in added if task is None or r.task == task]
        return sorted(matches, key=lambda r: (r.at, position[r.id]), reverse=True)

    def show(records: Iterable[AuditRecord]) -> list[str]:
        return [record.id.removeprefix(prefix + "-") for record in records]

    async def expect(
        store: Store, task: str | None, limit: int | None = None, offset: int = 0
    ) -> None:
        want = newest_first(task)
        if limit is None:
            got = await store.list_audit(task=task, offset=offset)
            want = want[offset : offset + 50]
        else:
            got = await store.list_audit(task=task, limit=limit, offset=offset)
            want = want[offset : offset + limit]
        query = f"list_audit(task={task}, limit={limit}, offset={offset})"
        got_ids = [record.id for record in got]
        want_ids = [record.id for record in want]
        _require(got_ids == want_ids, f"{query}: got {show(got)}, expected {show(want)}")
        for got_record, want_record in zip(got, want, strict=True):
            _require_audit(query, want_record, got_record)

    async with _replicas(make_store, 2) as (a, b):
        for record in added:
            await a.add_audit(record)
        await expect(b, x)
        await expect(b, y)
        await expect(b, z)  # the default limit: the newest 50 of 55
        await expect(b, z, offset=50)
        await expect(b, f"{prefix}-unknown")
        for limit in (0, 1, 2, 3, 7, 8, 100):
            for offset in (0, 1, 3, 7, 8, 20):
                await expect(b, x, limit=limit, offset=offset)
        await expect(b, z, limit=10, offset=45)

        ours = {record.id for record in added}
        seen: list[AuditRecord] = []
        offset, page_size = 0, 25
        while True:
            page = await b.list_audit(limit=page_size, offset=offset)
            seen += page
            if len(page) < page_size or ours <= {record.id for record in seen}:
                break
            offset += page_size
        times = [record.at for record in seen]
        _require(
            times == sorted(times, reverse=True),
            "list_audit() without a task is not ordered newest first",
        )
        mine = [record for record in seen if record.id in ours]
        want = newest_first(None)
        _require(
            [r.id for r in mine] == [r.id for r in want],
            f"list_audit() without a task, paged by {page_size}: got {show(mine)}, "
            f"expected {show(want)}",
        )

    async with _replicas(make_store, 1) as (again,):
        await expect(again, x)
        await expect(again, y)
