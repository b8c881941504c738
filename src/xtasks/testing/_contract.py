"""The store contract as executable checks: what every :class:`xtasks.abc.Store` must do.

Modelled on trio's ``check_one_way_stream``. A backend's test suite either awaits
:func:`check_store` or parametrises over :data:`STORE_CHECKS`, so that each check is its
own test::

    import pytest
    from xtasks.testing import STORE_CHECKS

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda check: check.__name__)
    async def test_store_contract(check, tmp_path):
        async def make_store(*, lease_ttl: float) -> MyStore:
            return MyStore(f"mystore://{tmp_path}/db", lease_ttl=lease_ttl)

        await check(make_store)

``make_store`` returns a new, unopened store object at each call, on the same backend
(same URL or file), so two objects it returns behave as two replicas sharing data. Within
one check every object is made with the same ``lease_ttl``. An in-process backend may
return the same object each time, which is then opened and closed more than once.

Each check opens and closes the objects it makes. It uses task names and run ids of its
own, so a persistent backend needs no cleaning between checks, and runs left behind by an
earlier check do not break a later one. Lease checks sleep in real time a little beyond a
0.1 s ``lease_ttl``, because store time is real time. The whole suite takes about a second
per backend.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

import anyio

from .._errors import StoreError
from .._runs import (
    AuditRecord,
    ErrorInfo,
    RunCause,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable

    from ..abc import Store

__all__ = [
    "STORE_CHECKS",
    "StoreFactory",
    "check_audit_trail",
    "check_claim_exclusivity",
    "check_close_idempotent",
    "check_errors_are_store_errors",
    "check_fencing",
    "check_last_fire_monotonic",
    "check_lease_expiry_and_reaping",
    "check_lease_renewal",
    "check_list_runs_order_and_paging",
    "check_list_runs_task_change",
    "check_reap_live_runs",
    "check_round_trip",
    "check_store",
    "check_task_batches_and_anchor",
    "check_task_state_round_trip",
]


class StoreFactory(Protocol):
    """``async (*, lease_ttl) -> Store``: a new unopened store object on the backend under test."""

    def __call__(self, *, lease_ttl: float) -> Awaitable[Store]: ...


#: Lease TTL of the lease checks: short, so they sleep little, in real time.
_SHORT_TTL: Final = 0.1
#: Lease TTL of the other checks: no lease expires while they run.
_LONG_TTL: Final = 60.0
#: Contenders for each fire in the claim checks, spread over two store objects.
_CONTENDERS: Final = 6

_T0: Final = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
#: Results of every JSON type, including the edge cases a codec gets wrong.
_JSON_RESULTS: Final[tuple[object, ...]] = (
    None,
    0,
    -1,
    2**53 + 1,
    0.1,
    -2.5e-300,
    True,
    False,
    "",
    'ünïcode ✓ "quoted"\nnew line',
    [],
    {},
    [None, [1, [2.5]], "x"],
    {"": None, "k": {"nested": [True, 1.5, "s"]}, "n": -7},
)


def _at(seconds: float) -> datetime:
    return _T0 + timedelta(seconds=seconds)


def _prefix() -> str:
    """A fresh prefix for the task names and run ids of one check call."""
    return "xt-" + uuid.uuid4().hex[:10]


def _run(run_id: str, task: str, status: RunStatus, **fields: Any) -> RunRecord:
    fields.setdefault("cause", RunCause.SCHEDULE)
    fields.setdefault("scheduled_at", _T0)
    return RunRecord(id=run_id, task=task, status=status, **fields)


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _require(condition: bool, message: str) -> None:
    """``assert`` that also holds under ``python -O``."""
    if not condition:
        _fail(message)


_DATETIME_FIELDS: Final = ("scheduled_at", "started_at", "finished_at")


def _not_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() != timedelta(0)


def _require_record(what: str, expected: RunRecord, actual: RunRecord | None) -> None:
    """Fail unless ``actual`` equals ``expected`` field by field, with aware UTC datetimes."""
    if actual is None:
        _fail(f"{what}: got None, expected run {expected.id!r}")
    if not isinstance(actual, RunRecord):
        _fail(f"{what}: got {type(actual).__name__} {actual!r}, expected a RunRecord")
    problems = [
        f"{field.name}: expected {getattr(expected, field.name)!r}, "
        f"got {getattr(actual, field.name)!r}"
        for field in dataclasses.fields(RunRecord)
        if getattr(expected, field.name) != getattr(actual, field.name)
    ]
    problems += [
        f"{name}: {getattr(actual, name)!r} is not an aware UTC datetime"
        for name in _DATETIME_FIELDS
        if _not_utc(getattr(actual, name))
    ]
    _require(not problems, f"{what}: run {expected.id!r} differs: " + "; ".join(problems))


def _require_task(what: str, expected: TaskRecord | None, actual: TaskRecord | None) -> None:
    _require(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")
    if actual is not None:
        _require(
            not _not_utc(actual.last_fire),
            f"{what}: last_fire {actual.last_fire!r} is not an aware UTC datetime",
        )


def _ids(records: Iterable[RunRecord]) -> list[str]:
    return [record.id for record in records]


@asynccontextmanager
async def _replicas(
    make_store: StoreFactory, count: int, *, lease_ttl: float = _LONG_TTL
) -> AsyncIterator[list[Store]]:
    """Make and open ``count`` store objects on the backend; close them all at the end."""
    stores: list[Store] = []
    try:
        for _ in range(count):
            store = await make_store(lease_ttl=lease_ttl)
            await store.open()
            stores.append(store)
        yield stores
    finally:
        for store in reversed(stores):
            await store.close()


async def _sleep_until(deadline: float) -> None:
    await anyio.sleep(max(deadline - anyio.current_time(), 0))


def _check(
    function: Callable[[StoreFactory], Awaitable[None]],
) -> Callable[[StoreFactory], Awaitable[None]]:
    """Name the check in the message of the ``AssertionError`` it raises."""

    @functools.wraps(function)
    async def check(make_store: StoreFactory) -> None:
        try:
            await function(make_store)
        except AssertionError as exc:
            exc.args = (f"{function.__name__}: {exc}", *exc.args[1:])
            raise

    return check


@_check
async def check_round_trip(make_store: StoreFactory) -> None:
    """Every field of a :class:`~xtasks.RunRecord` survives a write and a read.

    Verifies that:

    - ``save_run`` returns ``True`` and ``save_runs`` returns ``[]`` for records never
      marked lost (``save_runs([])`` too);
    - ``get_run`` through a second store object returns an equal record: datetimes aware,
      in UTC, to the microsecond; :class:`~xtasks.ErrorInfo` with multi-line and non-ASCII
      text; a JSON result of every JSON type (``None``, ``0``, ``""``, ``[]`` and ``{}``
      kept apart, integers beyond 2**53, floats exactly); ``""`` kept apart from ``None``;
      every :class:`~xtasks.RunStatus` and :class:`~xtasks.RunCause`;
    - saving a record with an existing id replaces every field, back to the defaults
      included, and saving the same record again changes nothing;
    - an unknown id reads as ``None``.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    full = RunRecord(
        id=f"{prefix}-full",
        task=task,
        status=RunStatus.SUCCEEDED,
        cause=RunCause.MANUAL,
        scheduled_at=_T0,
        started_at=_at(0.25),
        finished_at=_at(1.000001),
        attempts=3,
        error=ErrorInfo(
            type="ValueError",
            message="bad 'input' \"x\"\nline two: ünïcode ✓",
            traceback='Traceback (most recent call last):\n  File "t.py", line 1\nValueError\n',
        ),
        reason="retried 2 times",
        result={"rows": 3, "ok": True, "items": [1, 2.5, "three", None]},
        replica="replica-α",
    )
    minimal = _run(f"{prefix}-minimal", task, RunStatus.QUEUED, scheduled_at=_at(-1))
    empties = full.evolve(
        id=f"{prefix}-empties",
        error=ErrorInfo(type="E", message=""),
        reason="",
        result="",
        replica="",
        attempts=0,
    )
    varied = [
        *(
            minimal.evolve(id=f"{prefix}-status-{status}", status=status, attempts=i)
            for i, status in enumerate(RunStatus)
        ),
        *(minimal.evolve(id=f"{prefix}-cause-{cause}", cause=cause) for cause in RunCause),
        *(
            full.evolve(id=f"{prefix}-result-{i}", result=result)
            for i, result in enumerate(_JSON_RESULTS)
        ),
    ]
    async with _replicas(make_store, 2) as (a, b):
        _require(await a.save_runs([]) == [], "save_runs([]) must return []")
        for record in (full, minimal, empties):
            saved = await a.save_run(record)
            _require(saved is True, f"save_run of new run {record.id!r} returned {saved!r}")
        refused = await a.save_runs(varied)
        _require(refused == [], f"save_runs of new runs refused {refused!r}")
        for record in (full, minimal, empties, *varied):
            _require_record(
                "get_run through another store object", record, await b.get_run(record.id)
            )

        replaced = full.evolve(
            status=RunStatus.RUNNING,
            cause=RunCause.SCHEDULE,
            finished_at=None,
            error=None,
            reason=None,
            result=None,
            attempts=4,
            replica="replica-β",
        )
        for attempt in ("replacing", "repeating the same save"):
            saved = await b.save_run(replaced)
            _require(saved is True, f"{attempt}: save_run returned {saved!r}")
            _require_record(f"after {attempt}", replaced, await a.get_run(full.id))
        # Leave nothing live behind: a later reaper on a shared backend would mark it lost.
        await a.save_run(replaced.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(2)))
        await a.save_runs(
            [
                record.evolve(status=RunStatus.CANCELLED)
                for record in (minimal, *varied)
                if not record.status.is_final
            ]
        )
        missing = await a.get_run(f"{prefix}-missing")
        _require(missing is None, f"get_run of an unknown id returned {missing!r}, not None")


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
      ``last_fire``, keep the later value while ``save_task`` replaces the other fields;
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
        await b.save_task(task, paused)
        _require_task(
            "save_task with an earlier last_fire",
            dataclasses.replace(paused, last_fire=_at(10)),
            await a.load_task(task),
        )
        cancelled = TaskRecord(state=TaskState.CANCELLED, last_fire=None)
        await a.save_task(task, cancelled)
        _require_task(
            "save_task with last_fire=None",
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
        _require_task("save_task with a later last_fire", stale, await b.load_task(task))

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


@_check
async def check_lease_expiry_and_reaping(make_store: StoreFactory) -> None:
    """Expired leases are reaped exactly once, across concurrent reapers.

    Verifies, with three store objects and ``lease_ttl`` 0.1 s, that:

    - a lease is not reaped before it expires;
    - once they expire, every live run (``running``, ``queued``, ``waiting``) is returned
      by ``reap_lost`` exactly once over six concurrent reapers and a later one (at least
      once: none missed; at most once: none returned twice, whoever owned it);
    - the record returned has status ``lost``, a reason naming the owner replica and
      every other field unchanged, and it is what ``get_run`` returns afterwards;
    - runs saved final after being live are not reaped;
    - a lease taken just before a ``reap_lost`` call is not reaped.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    live = (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.WAITING)
    doomed = [
        _run(
            f"{prefix}-doomed-{i}",
            task,
            live[i % 3],
            replica=f"replica-{'ab'[i % 2]}",
            started_at=_at(i),
            attempts=1 + i % 3,
            result={"i": i},
        )
        for i in range(10)
    ]
    finished = _run(f"{prefix}-finished", task, RunStatus.RUNNING, replica="replica-a")
    dropped = _run(f"{prefix}-dropped", task, RunStatus.QUEUED, replica="replica-a")
    async with _replicas(make_store, 3, lease_ttl=ttl) as stores:
        a, b, c = stores
        before = anyio.current_time()
        await a.save_runs(doomed[0::2])
        await b.save_runs(doomed[1::2])
        await a.save_runs([finished, dropped])
        await a.save_runs(
            [
                finished.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(1)),
                dropped.evolve(status=RunStatus.CANCELLED, finished_at=_at(1)),
            ]
        )
        saved = anyio.current_time()
        reaped = list(await c.reap_lost())
        if anyio.current_time() - before < ttl:  # else too slow to tell: no verdict
            early = set(_ids(reaped)) & {record.id for record in doomed}
            _require(not early, f"runs reaped before their lease of {ttl} s expired: {early}")

        await _sleep_until(saved + 2 * ttl)

        async def reap(store: Store) -> None:
            reaped.extend(await store.reap_lost())

        async with anyio.create_task_group() as group:
            for store in (*stores, *stores):
                group.start_soon(reap, store)
        reaped.extend(await a.reap_lost())

        counts = Counter(_ids(reaped))
        twice = sorted(run_id for run_id, n in counts.items() if n > 1)
        _require(not twice, f"runs returned by more than one reap_lost call: {twice}")
        missed = sorted(record.id for record in doomed if record.id not in counts)
        _require(not missed, f"live runs past their lease were never reaped: {missed}")
        wrong = sorted({finished.id, dropped.id} & counts.keys())
        _require(not wrong, f"runs reaped though already final: {wrong}")
        by_id = {record.id: record for record in doomed}
        for record in reaped:
            original = by_id.get(record.id)
            if original is None:
                continue  # left by something else on a shared backend
            _require(
                record.status is RunStatus.LOST and bool(record.reason),
                f"reap_lost returned {record!r}: status must be lost, with a reason",
            )
            _require(
                original.replica in (record.reason or ""),
                f"the reason {record.reason!r} must name the owner {original.replica!r}",
            )
            expected = original.evolve(status=RunStatus.LOST, reason=record.reason)
            _require_record("the record reap_lost returned", expected, record)
            _require_record("get_run after reaping", expected, await b.get_run(record.id))

        fresh = _run(f"{prefix}-fresh", task, RunStatus.RUNNING, replica="replica-c")
        before = anyio.current_time()
        await c.save_run(fresh)
        reaped = list(await a.reap_lost())
        if anyio.current_time() - before < ttl:
            _require(fresh.id not in _ids(reaped), "a lease taken just now was reaped")
            await c.save_run(fresh.evolve(status=RunStatus.SUCCEEDED))


@_check
async def check_reap_live_runs(make_store: StoreFactory) -> None:
    """A silent replica's live runs are reaped, started or not; renewed and final ones never.

    A replica that dies leaves runs ``running``, ``queued`` (for a slot, or between
    attempts, for a retry) and ``waiting`` (for a dependency); each holds its lease.
    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that:

    - the live runs of a replica that no longer renews them are reaped once their lease
      expired: ``queued``, ``waiting`` and a retry (``running``, then ``queued``), not
      only ``running``; each comes back ``lost``, with a reason naming that replica and
      every other field unchanged;
    - the same runs of a replica that renews them every ``lease_ttl / 4`` are not reaped
      meanwhile (for three times ``lease_ttl``), and its retry can then be saved
      ``running`` again (not fenced);
    - runs saved final after being live (``succeeded``, ``cancelled``, ``skipped``) are
      never reaped, and renewing them reports them as not held;
    - the silent replica's late writes to its reaped ``queued`` run (starting it,
      finishing it) are refused and change nothing, and renewing reports its runs.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    oops = ErrorInfo("OSError", "flaky")

    def live(owner: str) -> tuple[list[RunRecord], RunRecord]:
        """``owner``'s live runs, and a retry: saved ``running``, then ``queued``."""
        runs = [
            _run(f"{prefix}-{owner}-queued", task, RunStatus.QUEUED, replica=owner),
            _run(f"{prefix}-{owner}-waiting", task, RunStatus.WAITING, replica=owner),
            _run(
                f"{prefix}-{owner}-running",
                task,
                RunStatus.RUNNING,
                replica=owner,
                started_at=_T0,
                attempts=1,
            ),
        ]
        retry = _run(f"{prefix}-{owner}-retry", task, RunStatus.RUNNING, replica=owner, attempts=1)
        return runs, retry

    silent, silent_retry = live("replica-a")
    alive, alive_retry = live("replica-b")
    finals = {
        status: _run(f"{prefix}-final-{status}", task, RunStatus.QUEUED, replica="replica-a")
        for status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.SKIPPED)
    }
    ended = [r.evolve(status=status, finished_at=_at(1)) for status, r in finals.items()]
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs([*silent, silent_retry, *finals.values()])
        await a.save_runs([silent_retry.evolve(status=RunStatus.QUEUED, error=oops), *ended])
        silent.append(silent_retry.evolve(status=RunStatus.QUEUED, error=oops))
        await b.save_runs([*alive, alive_retry])
        await b.save_run(alive_retry.evolve(status=RunStatus.QUEUED, error=oops))
        alive.append(alive_retry.evolve(status=RunStatus.QUEUED, error=oops))
        saved = anyio.current_time()

        reaped: list[RunRecord] = []
        conclusive = True
        while anyio.current_time() - saved < 3 * ttl:
            renewed_at = anyio.current_time()
            gone = await b.renew_leases("replica-b", _ids(alive))
            _require(gone == set(), f"live runs of their owner were reported not held: {gone}")
            await anyio.sleep(ttl / 4)
            reaped.extend(await a.reap_lost())
            early = sorted(set(_ids(reaped)) & set(_ids(alive)))
            if early:
                elapsed = anyio.current_time() - renewed_at
                _require(
                    elapsed >= ttl,
                    f"runs reaped {elapsed:.3f} s after their lease was renewed "
                    f"(lease_ttl={ttl} s): {early}",
                )
                conclusive = False  # too slow to tell
                break
        await _sleep_until(saved + 2 * ttl)
        reaped.extend(await b.reap_lost())

        by_id = {record.id: record for record in reaped}
        missed = [record.id for record in silent if record.id not in by_id]
        _require(
            not missed,
            f"live runs of a silent replica were not reaped after their lease: {missed}; "
            "reap_lost marks queued and waiting runs lost too, not only running ones",
        )
        wrong = sorted(set(by_id) & set(_ids(ended)))
        _require(not wrong, f"runs reaped though already final: {wrong}")
        for original in silent:
            record = by_id[original.id]
            _require(
                record.status is RunStatus.LOST and "replica-a" in (record.reason or ""),
                f"reap_lost returned {record!r}: status must be lost, with a reason "
                "naming the owner 'replica-a'",
            )
            expected = original.evolve(status=RunStatus.LOST, reason=record.reason)
            _require_record(f"the {original.status} run reap_lost returned", expected, record)
            _require_record("get_run after reaping", expected, await b.get_run(original.id))
        for record in ended:
            _require_record("a final run after reap_lost", record, await b.get_run(record.id))
        gone = await a.renew_leases("replica-a", _ids(ended))
        _require(
            gone == set(_ids(ended)), f"renewing final runs must report them all; got {gone!r}"
        )

        orphan = silent[0]
        late = {
            "starting it": orphan.evolve(status=RunStatus.RUNNING, started_at=_at(2), attempts=1),
            "finishing it": orphan.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(3)),
        }
        for what, record in late.items():
            accepted = await a.save_run(record)
            _require(
                accepted is False,
                f"the silent replica's late write ({what}) to its reaped queued run "
                f"returned {accepted!r}, not False",
            )
        _require_record(
            "a reaped queued run after its owner's late writes",
            by_id[orphan.id],
            await b.get_run(orphan.id),
        )
        gone = await a.renew_leases("replica-a", _ids(silent))
        _require(gone == set(_ids(silent)), f"renewing reaped runs must report them; got {gone!r}")
        if conclusive:
            for original in alive:
                current = await a.get_run(original.id)
                _require_record("a live run whose lease was kept renewed", original, current)
            retried = await b.save_run(alive_retry.evolve(attempts=2))
            _require(retried is True, "a renewed retry was refused as if it were lost")
        # Leave nothing live behind: a later reaper on a shared backend would mark it lost.
        await b.save_runs(
            [r.evolve(status=RunStatus.CANCELLED) for r in alive if r.id not in by_id]
        )


@_check
async def check_fencing(make_store: StoreFactory) -> None:
    """A run marked ``lost`` is fenced: every later write to it is refused.

    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that after a run is reaped:

    - its owner's late final write returns ``False`` and changes nothing;
    - ``save_runs`` returns exactly the ids of the refused records and still saves the
      others of the batch, in order around them;
    - a write by another replica, a ``running`` write (no resurrection) and a write of the
      lost record itself are refused too;
    - renewal reports the run as no longer held, and no later ``reap_lost`` returns it.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    victims = [
        _run(
            f"{prefix}-victim-{i}",
            task,
            RunStatus.RUNNING,
            replica="replica-a",
            started_at=_T0,
            attempts=1,
        )
        for i in range(2)
    ]
    victim, other_victim = victims
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs(victims)
        await _sleep_until(anyio.current_time() + 2 * ttl)
        lost = {r.id: r for r in await b.reap_lost() if r.id in _ids(victims)}
        _require(len(lost) == 2, f"expired runs were not reaped (got {sorted(lost)})")

        late = victim.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(1), result={"late": 1})
        saved = await a.save_run(late)
        _require(saved is False, f"the owner's late write to a lost run returned {saved!r}")
        _require_record("after a refused write", lost[victim.id], await b.get_run(victim.id))

        before = _run(f"{prefix}-before", task, RunStatus.SUCCEEDED, replica="replica-a")
        after = _run(f"{prefix}-after", task, RunStatus.FAILED, replica="replica-a")
        refused = await a.save_runs(
            [before, other_victim.evolve(status=RunStatus.FAILED), after.evolve(attempts=1), after]
        )
        _require(
            refused == [other_victim.id],
            f"save_runs must return the ids refused, [{other_victim.id!r}]; got {refused!r}",
        )
        _require_record("a record saved before a refused one", before, await b.get_run(before.id))
        _require_record("a record saved after a refused one", after, await b.get_run(after.id))
        _require_record(
            "a lost run after a refused batch write",
            lost[other_victim.id],
            await b.get_run(other_victim.id),
        )

        attempts = {
            "a write by another replica": victim.evolve(
                status=RunStatus.SUCCEEDED, replica="replica-b"
            ),
            "a running write (resurrection)": victim.evolve(attempts=2),
            "a write of the lost record itself": lost[victim.id],
        }
        for what, record in attempts.items():
            saved = await b.save_run(record)
            _require(saved is False, f"{what} to a lost run returned {saved!r}, not False")
        _require_record("after the refused writes", lost[victim.id], await a.get_run(victim.id))
        gone = await a.renew_leases("replica-a", [victim.id])
        _require(gone == {victim.id}, f"renewing a lost run must report it; got {gone!r}")
        again = set(_ids(await a.reap_lost())) & set(_ids(victims))
        _require(not again, f"lost runs were reaped again: {sorted(again)}")


@_check
async def check_lease_renewal(make_store: StoreFactory) -> None:
    """``renew_leases`` keeps a lease alive and reports the ids it does not hold.

    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that:

    - renewal returns exactly the ids the replica does not hold: another replica's run,
      a run saved final, an unknown id (and ``set()`` for no ids);
    - renewing every ``lease_ttl / 4`` through either store object keeps a run from
      being reaped for several times ``lease_ttl`` while the other object reaps;
    - once renewal stops, the run is reaped, and renewing it then reports it.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    kept = _run(f"{prefix}-kept", task, RunStatus.RUNNING, replica="replica-a")
    foreign = _run(f"{prefix}-foreign", task, RunStatus.RUNNING, replica="replica-b")
    done = _run(f"{prefix}-done", task, RunStatus.RUNNING, replica="replica-a")
    unknown = f"{prefix}-unknown"
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs([kept, done])
        await b.save_run(foreign)
        await a.save_run(done.evolve(status=RunStatus.SUCCEEDED))
        gone = await a.renew_leases("replica-a", [kept.id, foreign.id, done.id, unknown])
        expected = {foreign.id, done.id, unknown}
        _require(gone == expected, f"renew_leases must report {expected}, got {gone!r}")
        none = await a.renew_leases("replica-a", [])
        _require(none == set(), f"renew_leases of no ids returned {none!r}")

        conclusive = True
        start = anyio.current_time()
        turn = 0
        while anyio.current_time() - start < 3 * ttl:
            renewed_at = anyio.current_time()
            gone = await (a, b)[turn % 2].renew_leases("replica-a", [kept.id])
            _require(gone == set(), f"a held lease was reported as not held: {gone!r}")
            await anyio.sleep(ttl / 4)
            if kept.id in _ids(await (b, a)[turn % 2].reap_lost()):
                elapsed = anyio.current_time() - renewed_at
                _require(
                    elapsed >= ttl,
                    f"a run was reaped {elapsed:.3f} s after its lease was renewed "
                    f"(lease_ttl={ttl} s)",
                )
                conclusive = False  # too slow to tell
                break
            turn += 1
        if conclusive:
            current = await a.get_run(kept.id)
            _require_record("a run whose lease was kept renewed", kept, current)
            await _sleep_until(anyio.current_time() + 2 * ttl)
            reaped = _ids(await b.reap_lost())
            _require(kept.id in reaped, "a lease no longer renewed was not reaped")
        gone = await a.renew_leases("replica-a", [kept.id])
        _require(gone == {kept.id}, f"renewing a reaped run must report it, got {gone!r}")


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
        await store.save_task(task, state)
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


def _require_audit(what: str, expected: AuditRecord, actual: AuditRecord) -> None:
    """Fail unless ``actual`` equals ``expected`` field by field, ``at`` aware UTC."""
    if not isinstance(actual, AuditRecord):
        _fail(f"{what}: got {type(actual).__name__} {actual!r}, expected an AuditRecord")
    problems = [
        f"{field.name}: expected {getattr(expected, field.name)!r}, "
        f"got {getattr(actual, field.name)!r}"
        for field in dataclasses.fields(AuditRecord)
        if getattr(expected, field.name) != getattr(actual, field.name)
    ]
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


#: Every check, in the order :func:`check_store` runs them.
STORE_CHECKS: Final[tuple[Callable[[StoreFactory], Awaitable[None]], ...]] = (
    check_round_trip,
    check_claim_exclusivity,
    check_last_fire_monotonic,
    check_task_state_round_trip,
    check_lease_expiry_and_reaping,
    check_task_batches_and_anchor,
    check_reap_live_runs,
    check_fencing,
    check_lease_renewal,
    check_list_runs_order_and_paging,
    check_list_runs_task_change,
    check_audit_trail,
    check_close_idempotent,
    check_errors_are_store_errors,
)


async def check_store(make_store: StoreFactory) -> None:
    """Check a store backend against the :class:`~xtasks.abc.Store` contract.

    Runs every check of :data:`STORE_CHECKS` in order, each with fresh store objects
    from ``make_store``.

    :param make_store: ``async (*, lease_ttl: float) -> Store``, returning a new unopened
        store object on the backend under test at each call (see the module docstring).
    :raises AssertionError: at the first violation, naming the check and what differs.
    """
    for check in STORE_CHECKS:
        await check(make_store)
