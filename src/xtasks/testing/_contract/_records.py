"""Run records: every field of a record survives a round trip, whatever its value."""

from __future__ import annotations

from ..._runs import (
    MAX_EARLIER_ATTEMPTS,
    MAX_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    AttemptRecord,
    ErrorInfo,
    RunCause,
    RunRecord,
    RunStatus,
)
from ._support import (
    _JSON_RESULTS,
    _T0,
    StoreFactory,
    _at,
    _check,
    _prefix,
    _replicas,
    _require,
    _require_record,
    _run,
)


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


def _attempt(number: int, message: str, traceback: str = "") -> AttemptRecord:
    return AttemptRecord(
        number=number,
        started_at=_at(number * 10),
        finished_at=_at(number * 10 + 1.000001),
        error=ErrorInfo(type=f"Error{number}", message=message, traceback=traceback),
    )


@_check
async def check_earlier_attempts(make_store: StoreFactory) -> None:
    """The failed attempts before a run's latest (``RunRecord.earlier_attempts``) survive
    a write and a read, and a run that never retried reads back with none.

    Verifies that, through a second store object, ``get_run`` and ``list_runs`` return:

    - a run with earlier attempts equal, oldest first: a tuple of
      :class:`~xtasks.AttemptRecord`, times aware UTC to the microsecond, errors with
      multi-line, non-ASCII, NUL and private-use text, and an error at its full bounds
      (:data:`~xtasks.ErrorInfo.MAX_MESSAGE_CHARS` and ``MAX_TRACEBACK_CHARS``);
    - a run with :data:`~xtasks.RunRecord.MAX_EARLIER_ATTEMPTS` of them, all of them;
    - a run without any as the empty tuple ``()``, not ``None`` nor a list;
    - a record saved again with more attempts (the next retry), then with none,
      replaced each time.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    retried = RunRecord(
        id=f"{prefix}-retried",
        task=task,
        status=RunStatus.SUCCEEDED,
        cause=RunCause.SCHEDULE,
        scheduled_at=_T0,
        started_at=_at(10),
        finished_at=_at(40),
        attempts=3,
        result="third time lucky",
        replica="replica-a",
        earlier_attempts=(
            _attempt(
                1,
                "bad 'input' \"x\"\nline two: ünïcode ✓ \x00 after a NUL, \ue000 a private-use one",
                'Traceback (most recent call last):\n  File "t.py", line 1\nValueError\n',
            ),
            _attempt(2, "x" * MAX_MESSAGE_CHARS, "y" * MAX_TRACEBACK_CHARS),
        ),
    )
    many = retried.evolve(
        id=f"{prefix}-many",
        attempts=MAX_EARLIER_ATTEMPTS + 5,
        earlier_attempts=tuple(
            _attempt(n, f"attempt {n} failed")
            for n in range(6, MAX_EARLIER_ATTEMPTS + 6)  # the last ones of 25
        ),
    )
    never = _run(f"{prefix}-never", task, RunStatus.SUCCEEDED, attempts=1, finished_at=_at(1))
    live = retried.evolve(
        id=f"{prefix}-live",
        status=RunStatus.QUEUED,
        finished_at=None,
        result=None,
        attempts=1,
        earlier_attempts=retried.earlier_attempts[:1],
    )
    async with _replicas(make_store, 2) as (a, b):
        refused = await a.save_runs([retried, many, never, live])
        _require(refused == [], f"save_runs of new runs refused {refused!r}")
        for record in (retried, many, never, live):
            _require_record(
                "get_run through another store object", record, await b.get_run(record.id)
            )
        listed = {record.id: record for record in await b.list_runs(task=task, limit=10)}
        for record in (retried, many, never, live):
            _require_record("list_runs through another store object", record, listed.get(record.id))

        # The run's next attempt failed too: saved again, queued with one more.
        again = live.evolve(attempts=2, earlier_attempts=retried.earlier_attempts)
        saved = await b.save_run(again)
        _require(saved is True, f"save_run of {again.id!r} with more attempts returned {saved!r}")
        _require_record("after a save with one more attempt", again, await a.get_run(live.id))
        cleared = again.evolve(status=RunStatus.CANCELLED, finished_at=_at(50), earlier_attempts=())
        await a.save_run(cleared)  # final: nothing live left behind
        _require_record("after a save with none", cleared, await b.get_run(live.id))


@_check
async def check_run_executor_and_worker(make_store: StoreFactory) -> None:
    """Where a run ran (``RunRecord.executor`` and ``RunRecord.worker``) survives a write
    and a read.

    Verifies that, through a second store object, ``get_run`` and ``list_runs`` return:

    - a run's executor and the worker its executor reported, equal: a worker of
      :data:`~xtasks.RunRecord.MAX_WORKER_CHARS` non-ASCII characters, a NUL among them;
    - a run without a worker as ``None``, kept apart from a worker ``""``; a run with
      executor ``""`` (written by an xtasks that did not keep it) as ``""``, not ``None``;
    - a record saved again with no worker (its retry waits), then with another worker
      (the retry began elsewhere), replaced each time.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    remote = _run(
        f"{prefix}-remote",
        task,
        RunStatus.SUCCEEDED,
        started_at=_at(1),
        finished_at=_at(2),
        attempts=1,
        executor="celery",
        worker="celery@host1",
    )
    long_name = ("wörker-ü✓\x00" * RunRecord.MAX_WORKER_CHARS)[: RunRecord.MAX_WORKER_CHARS]
    records = [
        remote,
        remote.evolve(id=f"{prefix}-long", worker=long_name),
        remote.evolve(id=f"{prefix}-blank", worker=""),
        _run(f"{prefix}-builtin", task, RunStatus.FAILED, finished_at=_at(1), executor="sync"),
        _run(f"{prefix}-old", task, RunStatus.MISSED, finished_at=_at(1)),  # executor ""
    ]
    live = remote.evolve(
        id=f"{prefix}-live", status=RunStatus.RUNNING, finished_at=None, worker="celery@host1"
    )
    async with _replicas(make_store, 2) as (a, b):
        refused = await a.save_runs([*records, live])
        _require(refused == [], f"save_runs of new runs refused {refused!r}")
        for record in (*records, live):
            _require_record(
                "get_run through another store object", record, await b.get_run(record.id)
            )
        listed = {record.id: record for record in await b.list_runs(task=task, limit=10)}
        for record in (*records, live):
            _require_record("list_runs through another store object", record, listed.get(record.id))

        # Its attempt failed: the retry waits, no worker yet; then it begins on another.
        waiting = live.evolve(status=RunStatus.QUEUED, worker=None)
        saved = await b.save_run(waiting)
        _require(saved is True, f"save_run of {waiting.id!r} without a worker returned {saved!r}")
        _require_record("after a save without a worker", waiting, await a.get_run(live.id))
        moved = waiting.evolve(status=RunStatus.RUNNING, attempts=2, worker="celery@host2")
        await a.save_run(moved)
        _require_record("after a save with another worker", moved, await b.get_run(live.id))
        await a.save_run(moved.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(3)))
