"""Run records: every field of a record survives a round trip, whatever its value."""

from __future__ import annotations

from ..._runs import (
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
