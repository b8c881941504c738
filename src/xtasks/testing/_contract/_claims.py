"""Claims: each fire is claimed exactly once, and ``last_fire`` only moves forward."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from ..._runs import (
    TaskRecord,
    TaskState,
)
from ._support import (
    _CONTENDERS,
    StoreFactory,
    _at,
    _check,
    _fail,
    _prefix,
    _replicas,
    _require,
    _require_task,
)

if TYPE_CHECKING:
    from ...abc import Store


@_check
async def check_claim_exclusivity(make_store: StoreFactory) -> None:
    """Exactly one claim of a ``(task, fire_time)`` succeeds, across store objects.

    Verifies that, with two store objects on the backend, many concurrent contenders
    (tasks of one task group, half on each object) for each of several fires produce
    exactly one ``True`` per fire and ``False`` for the rest; later claims of those fires
    lose too; ``claim_fire`` returns a ``bool``; and the same fire time of another task,
    and a fire time one microsecond later, are different fires.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    fires = [_at(i) for i in range(8)]
    outcomes: dict[datetime, list[tuple[str, object]]] = {fire: [] for fire in fires}
    async with _replicas(make_store, 2) as stores:

        async def contend(store: Store, replica: str, fire: datetime) -> None:
            outcomes[fire].append((replica, await store.claim_fire(task, fire, replica)))

        async with anyio.create_task_group() as group:
            for i in range(_CONTENDERS):
                for fire in fires:
                    group.start_soon(contend, stores[i % 2], f"replica-{i}", fire)
        for fire, results in outcomes.items():
            odd = [won for _, won in results if not isinstance(won, bool)]
            if odd:
                _fail(f"claim_fire returned {odd[0]!r}, not a bool")
            winners = [replica for replica, won in results if won]
            _require(
                len(winners) == 1,
                f"{_CONTENDERS} concurrent claims of fire {fire.isoformat()} on two store "
                f"objects: {len(winners)} won ({winners}); exactly one must",
            )
        for fire in fires:
            for store in stores:
                won = await store.claim_fire(task, fire, "replica-late")
                _require(won is False, f"a later claim of fire {fire.isoformat()} won again")
        other_task = await stores[1].claim_fire(f"{prefix}-other", fires[0], "replica-0")
        _require(other_task is True, "the same fire time of another task is another fire")
        later = fires[0] + timedelta(microseconds=1)
        won = await stores[0].claim_fire(task, later, "replica-0")
        _require(won is True, "a fire time 1 µs later is another fire (microseconds are kept)")


@_check
async def check_last_fire_monotonic(make_store: StoreFactory) -> None:
    """A task's ``last_fire`` only moves forward, whoever writes it.

    Verifies that:

    - an unknown task loads as ``None``; after a claim it loads as a default
      :class:`~xtasks.abc.TaskRecord` whose ``last_fire`` is the fire time claimed;
    - a claim of an earlier fire, and ``save_task`` with an earlier or ``None``
      ``last_fire`` (or ``change_task_state`` with one), keep the later value while the
      other fields are replaced (the state by ``change_task_state`` only);
    - a claim moves ``last_fire`` forward and keeps the other fields;
    - concurrent claims of many fires (latest first) through two store objects, raced by
      stale ``save_task`` calls, leave the latest fire.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    async with _replicas(make_store, 2) as (a, b):
        _require_task("load_task of a task never saved", None, await a.load_task(task))
        won = await a.claim_fire(task, _at(10), "replica-a")
        _require(won is True, "the first claim of a fire must win")
        _require_task("after a claim", TaskRecord(last_fire=_at(10)), await b.load_task(task))
        won = await b.claim_fire(task, _at(5), "replica-b")
        _require(won is True, "the claim of an earlier, unclaimed fire must win")
        _require_task(
            "after claiming an earlier fire", TaskRecord(last_fire=_at(10)), await a.load_task(task)
        )
        paused = TaskRecord(
            state=TaskState.PAUSED, last_fire=_at(1), consecutive_failures=2, alerting=True
        )
        await b.change_task_state(task, paused)
        _require_task(
            "change_task_state with an earlier last_fire",
            dataclasses.replace(paused, last_fire=_at(10)),
            await a.load_task(task),
        )
        cancelled = TaskRecord(state=TaskState.CANCELLED, last_fire=None)
        await a.change_task_state(task, cancelled)
        _require_task(
            "change_task_state with last_fire=None",
            dataclasses.replace(cancelled, last_fire=_at(10)),
            await b.load_task(task),
        )
        await b.claim_fire(task, _at(20), "replica-b")
        _require_task(
            "a claim must move last_fire forward and keep the other fields",
            dataclasses.replace(cancelled, last_fire=_at(20)),
            await a.load_task(task),
        )
        stale = TaskRecord(last_fire=_at(30), consecutive_failures=5, alerting=True)
        await a.save_task(task, stale)
        stale = dataclasses.replace(stale, state=TaskState.CANCELLED)  # save_task keeps it
        _require_task("save_task with a later last_fire", stale, await b.load_task(task))
        await b.save_task(task, dataclasses.replace(stale, last_fire=_at(2)))
        _require_task("save_task with an earlier last_fire", stale, await a.load_task(task))

        stores = (a, b)
        async with anyio.create_task_group() as group:
            for i in reversed(range(12)):
                group.start_soon(stores[i % 2].claim_fire, task, _at(100 + i), f"replica-{i}")
                group.start_soon(stores[(i + 1) % 2].save_task, task, stale)
        _require_task(
            "after racing claims and stale save_task calls",
            dataclasses.replace(stale, last_fire=_at(111)),
            await a.load_task(task),
        )


@_check
async def check_claim_fires(make_store: StoreFactory) -> None:
    """``claim_fires`` claims each fire of a batch as ``claim_fire`` would, in order.

    Verifies that an empty batch gives ``[]``; a batch of new fires wins each (``True``,
    a bool) and moves ``last_fire`` to the latest; in a batch over fires claimed already
    (by ``claim_fire`` or by a batch, through another store object) those lose and the
    rest win, and the same pair twice wins once; and overlapping batches raced through
    two store objects win each fire exactly once.
    """
    prefix = _prefix()
    task, other = f"{prefix}-task", f"{prefix}-other"
    async with _replicas(make_store, 2) as (a, b):
        empty = await a.claim_fires([], "replica-a")
        _require(empty == [], f"claim_fires([]) returned {empty!r}, not []")
        outcomes = await a.claim_fires([(task, _at(i)) for i in range(3)], "replica-a")
        _require(
            all(won is True for won in outcomes) and len(outcomes) == 3,
            f"a batch of 3 new fires returned {outcomes!r}, expected [True, True, True]",
        )
        _require_task("after a batch", TaskRecord(last_fire=_at(2)), await b.load_task(task))
        _require(await b.claim_fire(task, _at(3), "replica-b") is True, "claim_fire after")
        mixed = [(task, _at(1)), (task, _at(3)), (task, _at(4)), (task, _at(4)), (other, _at(1))]
        outcomes = await b.claim_fires(mixed, "replica-b")
        expected = [False, False, True, False, True]
        _require(
            [won is True for won in outcomes] == expected and len(outcomes) == len(expected),
            f"a batch over claimed fires {[at.isoformat() for _, at in mixed]} returned "
            f"{outcomes!r}, expected {expected}",
        )
        _require_task("after a mixed batch", TaskRecord(last_fire=_at(4)), await a.load_task(task))

        fires = [(task, _at(100 + i)) for i in range(12)]
        batches = [fires[:8], fires[4:], fires[::2], fires[::-1], fires[1::3]]
        won: dict[datetime, list[str]] = {at: [] for _, at in fires}

        async def contend(store: Store, replica: str, batch: list[tuple[str, datetime]]) -> None:
            results = await store.claim_fires(batch, replica)
            _require(len(results) == len(batch), f"{len(batch)} fires, {len(results)} outcomes")
            for (_, at), result in zip(batch, results, strict=True):
                if not isinstance(result, bool):
                    _fail(f"claim_fires gave {result!r} for a healthy store, not a bool")
                if result:
                    won[at].append(replica)

        async with anyio.create_task_group() as group:
            for i, batch in enumerate(batches):
                group.start_soon(contend, (a, b)[i % 2], f"replica-{i}", batch)
        for at, winners in won.items():
            _require(
                len(winners) == 1,
                f"overlapping batches raced on two store objects: fire {at.isoformat()} was "
                f"won {len(winners)} times ({winners}); exactly once it must",
            )
