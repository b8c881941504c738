"""History: ``list_runs`` order and paging, and a run that moves to another task."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ..._runs import (
    RunRecord,
    RunStatus,
)
from ._support import (
    StoreFactory,
    _at,
    _check,
    _ids,
    _prefix,
    _replicas,
    _require,
    _require_record,
    _run,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable


@_check
async def check_list_runs_order_and_paging(make_store: StoreFactory) -> None:
    """``list_runs`` returns runs newest first, filtered, a page at a time.

    Verifies, through a second store object, that:

    - runs are ordered by ``scheduled_at`` descending (to the microsecond), ties by
      insertion, later first, where replacing a record keeps its place;
    - ``task`` and ``statuses`` (a list, set or tuple; empty matches nothing) filter,
      alone and together; an unknown task lists nothing;
    - ``limit`` and ``offset`` slice that order (``limit=0``, an offset past the end:
      ``[]``), so consecutive pages add up to the whole; ``limit`` defaults to 50;
    - without ``task``, the runs of every task are listed in the same order (the runs
      other checks left on a shared backend are tolerated).
    """
    prefix = _prefix()
    x, y, z = (f"{prefix}-{name}" for name in "xyz")
    s = RunStatus
    tie = _at(2)
    plan = [  # (id, task, status, scheduled_at), in insertion order
        ("x1", x, s.SUCCEEDED, tie),
        ("y1", y, s.FAILED, tie),
        ("x2", x, s.FAILED, _at(1)),
        ("x3", x, s.QUEUED, _at(3)),
        ("x4", x, s.SUCCEEDED, tie),
        ("y2", y, s.SUCCEEDED, _at(5)),
        ("x5", x, s.CANCELLED, _at(0)),
        ("x6", x, s.WAITING, tie),
        ("x7", x, s.SKIPPED, tie + timedelta(microseconds=1)),
    ]
    inserted = [
        _run(f"{prefix}-{name}", task, status, scheduled_at=at) for name, task, status, at in plan
    ]
    # 55 runs of task z, inserted out of order: more than the default limit.
    inserted += [
        _run(f"{prefix}-z{i:02}", z, s.SUCCEEDED, scheduled_at=_at(-100 + (i * 17) % 55))
        for i in range(55)
    ]
    position = {record.id: i for i, record in enumerate(inserted)}
    replacements = [
        inserted[0].evolve(status=s.FAILED),
        inserted[4].evolve(result={"replaced": True}),
    ]
    latest = {record.id: record for record in (*inserted, *replacements)}

    def newest_first(task: str | None, statuses: Iterable[RunStatus] | None) -> list[RunRecord]:
        wanted = None if statuses is None else set(statuses)
        matches = [
            r
            for r in latest.values()
            if (task is None or r.task == task) and (wanted is None or r.status in wanted)
        ]
        return sorted(matches, key=lambda r: (r.scheduled_at, position[r.id]), reverse=True)

    def show(records: Iterable[RunRecord]) -> list[str]:
        return [record.id.removeprefix(prefix + "-") for record in records]

    async with _replicas(make_store, 2) as (a, b):
        for record in inserted[:5]:
            await a.save_run(record)
        await a.save_runs(inserted[5:])
        await b.save_runs(replacements)

        async def expect(
            task: str | None,
            statuses: Collection[RunStatus] | None = None,
            limit: int | None = None,
            offset: int = 0,
        ) -> None:
            want = newest_first(task, statuses)
            if limit is None:
                got = await a.list_runs(task=task, statuses=statuses, offset=offset)
                want = want[offset : offset + 50]
            else:
                got = await a.list_runs(task=task, statuses=statuses, limit=limit, offset=offset)
                want = want[offset : offset + limit]
            query = f"list_runs(task={task}, statuses={statuses}, limit={limit}, offset={offset})"
            _require(_ids(got) == _ids(want), f"{query}: got {show(got)}, expected {show(want)}")
            for got_record, want_record in zip(got, want, strict=True):
                _require_record(query, want_record, got_record)

        await expect(x)
        await expect(y)
        await expect(z)  # the default limit: the newest 50 of 55
        await expect(z, offset=50)
        await expect(f"{prefix}-unknown")
        await expect(x, [s.FAILED])
        await expect(x, {s.SUCCEEDED, s.WAITING})
        await expect(y, (s.SUCCEEDED,))
        await expect(x, frozenset({s.SUCCEEDED, s.FAILED}), limit=2, offset=1)
        await expect(x, [])
        await expect(x, [s.MISSED])
        for limit in (0, 1, 2, 3, 7, 8, 100):
            for offset in (0, 1, 3, 7, 8, 20):
                await expect(x, limit=limit, offset=offset)
        await expect(z, limit=10, offset=45)

        # Without a task filter: page through everything until all our runs were seen.
        ours = {record.id for record in inserted}
        seen: list[RunRecord] = []
        offset, page_size = 0, 25
        while True:
            page = await a.list_runs(limit=page_size, offset=offset)
            seen += page
            if len(page) < page_size or ours <= set(_ids(seen)):
                break
            offset += page_size
        times = [record.scheduled_at for record in seen]
        _require(
            times == sorted(times, reverse=True),
            "list_runs() without a task is not ordered newest first",
        )
        mine = [record for record in seen if record.id in ours]
        want = newest_first(None, None)
        _require(
            _ids(mine) == _ids(want),
            f"list_runs() without a task, paged by {page_size}: got {show(mine)}, "
            f"expected {show(want)}",
        )


@_check
async def check_list_runs_task_change(make_store: StoreFactory) -> None:
    """A record saved again under another ``task`` is listed under that task only.

    ``save_run`` replaces the whole record, ``task`` included, and ``list_runs(task=...)``
    returns "only this task's runs": verifies both filters after such a replacement.
    """
    prefix = _prefix()
    old, new = f"{prefix}-old", f"{prefix}-new"
    record = _run(f"{prefix}-moved", old, RunStatus.QUEUED)
    moved = record.evolve(task=new)
    async with _replicas(make_store, 2) as (a, b):
        await a.save_run(record)
        await a.save_run(moved)
        listed_old = await b.list_runs(task=old)
        _require(
            listed_old == [],
            f"list_runs(task={old!r}) returned {listed_old!r}, a run of another task",
        )
        listed_new = await b.list_runs(task=new)
        _require(
            _ids(listed_new) == [moved.id],
            f"list_runs(task={new!r}) returned {_ids(listed_new)}, expected [{moved.id!r}]",
        )
        _require_record("list_runs after the task changed", moved, listed_new[0])
