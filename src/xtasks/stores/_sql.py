"""Schema and statements of the SQL stores (SQLite today; PostgreSQL can start from these).

The statements stick to SQL that PostgreSQL also speaks where SQLite allows it
(``ON CONFLICT ... DO``, window functions, no ``INSERT OR IGNORE``); the placeholders
(``:name``), the column types and the two-argument ``MAX`` (``GREATEST`` there) are SQLite's. Times are UTC ISO-8601 text with microseconds
(``2026-01-01T00:00:00.000000+00:00``): fixed width, so text order is time order, readable
in a shell, and read back as equal, aware UTC datetimes (a naive one is refused with
``ValueError``). Leases are ``REAL`` Unix seconds of store time. ``result`` is JSON text
(``None`` is NULL): tuples come back as lists and keys as strings, and a result JSON cannot
encode is stored as its ``repr()`` string; at most :data:`MAX_RESULT_CHARS` characters
(see :func:`dump_result`). The ``runs`` columns are named after the fields
of :class:`~xtasks.RunRecord` (an ``ErrorInfo`` as ``error_type``, ``error_message``,
``error_traceback``; ``earlier_attempts`` as JSON text, NULL when there are none, see
:func:`encode_attempts`), and :data:`RUN_COLUMNS`, :data:`SAVE_RUN`, :func:`encode_run` and
:func:`decode_run` are derived from them.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from .._feed import DURATION_BUCKETS
from .._runs import (
    MAX_EARLIER_ATTEMPTS,
    AttemptRecord,
    AuditRecord,
    ErrorInfo,
    RunRecord,
    RunStatus,
    describe_failure,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "ADD_AUDIT",
    "ADD_TOTALS",
    "ADVANCE_CHANGE",
    "AUDIT_COLUMNS",
    "CHANGE_TASK_STATE",
    "CLAIM",
    "CLAIMED_LAST_FIRE",
    "LIVE",
    "MAX_RESULT_CHARS",
    "MIGRATIONS",
    "PRUNE_AGE",
    "PRUNE_AUDIT_AGE",
    "PRUNE_CLAIMS",
    "PRUNE_CLAIM_FLOORS",
    "PRUNE_COUNT",
    "READ_CHANGE_COUNTERS",
    "READ_TOTALS",
    "REAP",
    "REAP_SCAN",
    "RENEW",
    "RUN_CHANGES",
    "RUN_COLUMNS",
    "SAVE_RUN",
    "SAVE_TASK",
    "SET_PRUNED_CHANGE",
    "TOTALS_COLUMNS",
    "decode_attempts",
    "decode_audit",
    "decode_run",
    "dt",
    "dump_result",
    "encode_attempts",
    "encode_audit",
    "encode_run",
    "ts",
    "ts_epoch",
]

_LIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING})
#: Statuses of runs still in flight, as an SQL list: retention never deletes them, and
#: they hold their replica's lease.
LIVE = ", ".join(f"'{s.value}'" for s in sorted(_LIVE_STATUSES))

#: Schema migrations: ``MIGRATIONS[i]`` takes ``PRAGMA user_version`` from ``i`` to ``i + 1``.
#: Append only; never edit a released entry.
MIGRATIONS: list[tuple[str, ...]] = [
    (  # v1: initial schema
        """CREATE TABLE claims (
            task TEXT NOT NULL,
            fire_time TEXT NOT NULL,
            replica TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            PRIMARY KEY (task, fire_time)
        ) WITHOUT ROWID""",
        # seq is the rowid: insertion order, the tie-break of history; id is the natural key.
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            task TEXT NOT NULL,
            status TEXT NOT NULL,
            trigger TEXT NOT NULL,
            scheduled_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT,
            reason TEXT,
            result TEXT,
            replica TEXT NOT NULL DEFAULT '',
            lease_owner TEXT,
            lease_expires REAL,
            epoch INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_by_task ON runs (task, scheduled_at DESC, seq DESC)",
        "CREATE INDEX runs_by_time ON runs (scheduled_at DESC, seq DESC)",
        "CREATE INDEX runs_by_status ON runs (status)",
        "CREATE INDEX runs_by_lease ON runs (lease_expires) WHERE lease_owner IS NOT NULL",
        # claim_floor: claims at or before it were pruned and count as taken.
        """CREATE TABLE tasks (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'active',
            last_fire TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            alerting INTEGER NOT NULL DEFAULT 0,
            anchor TEXT,
            claim_floor TEXT
        )""",
    ),
    (  # v2: the audit trail of manual actions
        # seq is the rowid: insertion order, the tie-break when two records share `at`.
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            task TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT
        )""",
        # Task-filtered pages, newest first; the unfiltered listing and retention by age
        # use the second.
        "CREATE INDEX audit_by_task ON audit (task, at DESC, seq DESC)",
        "CREATE INDEX audit_by_time ON audit (at DESC, seq DESC)",
    ),
    (  # v3: RunRecord.trigger was renamed RunRecord.cause; the column follows the field
        "ALTER TABLE runs RENAME COLUMN trigger TO cause",
    ),
    (  # v4: every live run (queued, waiting, running) holds its replica's lease, not only
        # running ones, so runs left queued by a dead replica are reaped too. Live rows
        # written before had none: they get one lease of the default 10 s from now, so an
        # orphan of a crash before the upgrade is reaped, and a live owner renews it.
        f"""UPDATE runs SET lease_owner = replica,
            lease_expires = (julianday('now') - 2440587.5) * 86400.0 + 10.0
        WHERE lease_owner IS NULL AND status IN ({LIVE})""",
        # The reaper's scan: runs_by_lease (v1) indexes exactly the leased (live) rows.
    ),
    (  # v5: a task's state is changed only by pause/resume/cancel, each numbered, so
        # replicas poll what changed since the last number they saw (task_state_changes)
        "ALTER TABLE tasks ADD COLUMN state_change INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX tasks_by_state_change ON tasks (state_change) WHERE state_change > 0",
    ),
    (  # v6: how the task was last defined, for replicas to spot a name defined two ways
        "ALTER TABLE tasks ADD COLUMN definition TEXT",
    ),
    (  # v7: the failed attempts before a run's latest, as JSON text (NULL: none); rows
        # written before read back with none
        "ALTER TABLE runs ADD COLUMN earlier_attempts TEXT",
    ),
    (  # v8: the executor a run's latest attempt went to, and the worker it reported;
        # rows written before read back with executor "" and no worker
        "ALTER TABLE runs ADD COLUMN executor TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN worker TEXT",
    ),
    (  # v9: the fleet's change feed and run totals. Each accepted write of a run numbers
        # its row's change from the run_change counter (rows written before have 0: they
        # changed before any reader's number); run_change_pruned is the highest change of
        # a row retention deleted. run_totals counts each run at its first final write.
        "ALTER TABLE runs ADD COLUMN change INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX runs_by_change ON runs (change) WHERE change > 0",
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT INTO counters VALUES ('run_change', 0), ('run_change_pruned', 0)",
        f"""CREATE TABLE run_totals (
            task TEXT NOT NULL,
            status TEXT NOT NULL,
            runs INTEGER NOT NULL,
            timed INTEGER NOT NULL,
            seconds REAL NOT NULL,
            {", ".join(f"b{i} INTEGER NOT NULL" for i in range(len(DURATION_BUCKETS) + 1))},
            PRIMARY KEY (task, status)
        ) WITHOUT ROWID""",
    ),
]

# The WHERE keeps the SELECT form of INSERT unambiguous before ON CONFLICT (SQLite rule).
CLAIM = """
INSERT INTO claims (task, fire_time, replica, claimed_at)
SELECT :task, :fire_time, :replica, :now
WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE name = :task AND claim_floor >= :fire_time)
ON CONFLICT (task, fire_time) DO NOTHING
"""

CLAIMED_LAST_FIRE = """
INSERT INTO tasks (name, last_fire) VALUES (:task, :fire_time)
ON CONFLICT (name) DO UPDATE SET last_fire = excluded.last_fire
WHERE tasks.last_fire IS NULL OR tasks.last_fire < excluded.last_fire
"""

RENEW = "UPDATE runs SET lease_expires = :expires WHERE id = :id AND lease_owner = :replica"

REAP = """
UPDATE runs SET status = 'lost', reason = :reason,
    lease_owner = NULL, lease_expires = NULL, epoch = epoch + 1, change = :change
WHERE id = :id
"""

#: The columns of run_totals after task and status, in :meth:`TotalsBatch.rows` order.
TOTALS_COLUMNS = ("runs", "timed", "seconds", *(f"b{i}" for i in range(len(DURATION_BUCKETS) + 1)))

#: Adds a row of :meth:`~xtasks._feed.TotalsBatch.rows` to the totals.
ADD_TOTALS = f"""
INSERT INTO run_totals (task, status, {", ".join(TOTALS_COLUMNS)})
VALUES ({", ".join("?" * (len(TOTALS_COLUMNS) + 2))})
ON CONFLICT (task, status) DO UPDATE SET
    {", ".join(f"{c} = {c} + excluded.{c}" for c in TOTALS_COLUMNS)}
"""

#: Takes the next ``?`` change numbers: returns the last of them.
ADVANCE_CHANGE = """
UPDATE counters SET value = value + ? WHERE name = 'run_change' RETURNING value
"""
#: Retention deleted a row whose latest change had this number (never lowers it).
SET_PRUNED_CHANGE = """
UPDATE counters SET value = MAX(value, ?) WHERE name = 'run_change_pruned'
"""
READ_CHANGE_COUNTERS = """
SELECT (SELECT value FROM counters WHERE name = 'run_change'),
    (SELECT value FROM counters WHERE name = 'run_change_pruned')
"""

READ_TOTALS = f"SELECT task, status, {', '.join(TOTALS_COLUMNS)} FROM run_totals"

SAVE_TASK = """
INSERT INTO tasks (name, state, last_fire, consecutive_failures, alerting, anchor, definition)
VALUES (:name, :state, :last_fire, :consecutive_failures, :alerting, :anchor, :definition)
ON CONFLICT (name) DO UPDATE SET
    last_fire = COALESCE(MAX(tasks.last_fire, excluded.last_fire),
                         tasks.last_fire, excluded.last_fire),
    consecutive_failures = excluded.consecutive_failures,
    alerting = excluded.alerting,
    anchor = COALESCE(tasks.anchor, excluded.anchor),
    definition = COALESCE(excluded.definition, tasks.definition)
"""

#: After SAVE_TASK, in the same transaction (which serialises changes: numbers are given
#: in commit order).
CHANGE_TASK_STATE = """
UPDATE tasks SET state = :state,
    state_change = (SELECT COALESCE(MAX(state_change), 0) + 1 FROM tasks WHERE state_change > 0)
WHERE name = :name
RETURNING state_change
"""

PRUNE_COUNT = f"""
DELETE FROM runs WHERE status NOT IN ({LIVE}) AND seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY task ORDER BY scheduled_at DESC, seq DESC) AS n
        FROM runs)
    WHERE n > :keep)
RETURNING change
"""

PRUNE_AGE = f"""
DELETE FROM runs WHERE status NOT IN ({LIVE}) AND COALESCE(finished_at, scheduled_at) < :cutoff
RETURNING change
"""

PRUNE_AUDIT_AGE = "DELETE FROM audit WHERE at < :cutoff"

AUDIT_COLUMNS = "id, at, actor, action, task, outcome, detail"

ADD_AUDIT = f"""
INSERT INTO audit ({AUDIT_COLUMNS})
VALUES (:id, :at, :actor, :action, :task, :outcome, :detail)
"""

PRUNE_CLAIM_FLOORS = """
UPDATE tasks SET claim_floor = (
    SELECT MAX(fire_time) FROM claims WHERE task = tasks.name AND fire_time < :cutoff)
WHERE name IN (SELECT task FROM claims WHERE fire_time < :cutoff)
"""

PRUNE_CLAIMS = "DELETE FROM claims WHERE fire_time < :cutoff"


# -- rows <-> records ------------------------------------------------------------------


def _utc_text(value: datetime) -> str:
    if value.tzinfo is not UTC:  # what xtasks writes is UTC already: no conversion
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: a store needs aware datetimes")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def ts(value: datetime | None) -> str | None:
    """A datetime as stored: UTC ISO-8601 text with microseconds."""
    return None if value is None else _utc_text(value)


def ts_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


#: Characters of a result's JSON text a store keeps. A larger result is stored as a string
#: saying so, with as much of the start of its JSON text as fits.
MAX_RESULT_CHARS = 64 * 1024


def dump_result(result: Any) -> str | None:
    """``result`` as the JSON text stored for it, in at most :data:`MAX_RESULT_CHARS`
    characters; never raises.

    What JSON cannot encode is stored as its ``repr()`` string; a ``repr()`` that raises
    (or an int too long to write out) as a placeholder saying why. A longer result is
    stored as a string: a long string (or ``repr()``), its start and how much was cut;
    anything else, ``<result of N characters of JSON, cut: ...>`` holding the start of
    its JSON text.
    """
    if result is None:
        return None
    words: str | None = None  # the text a long result is cut as: its repr() ...
    try:
        text = json.dumps(result)
    except BaseException:  # noqa: BLE001 - a task's object must not break its record
        words = _repr_of(result)
        text = json.dumps(words)
    if len(text) <= MAX_RESULT_CHARS:
        return text
    if words is None and issubclass(type(result), str):  # ... or the string it is
        words = str.__str__(result)
    if words is not None:
        whole = words
        return _fitted(
            lambda start: f"{start} [... {len(whole) - len(start):,} characters cut]", whole
        )
    return _fitted(
        lambda start: f"<result of {len(text):,} characters of JSON, cut: {start}>", text
    )


def _repr_of(result: Any) -> str:
    """``repr(result)``, or the placeholder of why it could not be had."""
    try:
        text = repr(result)
        return text if type(text) is str else str.__str__(text)
    except BaseException as exc:  # noqa: BLE001 - a task's object must not break its record
        return describe_failure("repr()", exc)


def _fitted(frame: Callable[[str], str], text: str) -> str:
    """The JSON string of ``frame(start)`` for a start of ``text`` that fits within
    :data:`MAX_RESULT_CHARS` when one character more would not: as much of the value as
    the bound holds. A bisection, since JSON escapes make each character 1 to 6 long;
    never past the bound's length, as a start that long cannot fit."""
    fits, too_long = 0, min(len(text), MAX_RESULT_CHARS)  # frame(text[:too_long]) > bound
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(json.dumps(frame(text[:middle]))) <= MAX_RESULT_CHARS:
            fits = middle
        else:
            too_long = middle
    return json.dumps(frame(text[:fits]))


def encode_attempts(attempts: Sequence[AttemptRecord]) -> str:
    """Earlier attempts as stored: a JSON array, oldest first, of ``{"number",
    "started_at", "finished_at", "error": {"type", "message", "traceback"}}`` (times as
    :func:`ts` writes them), the last :data:`~xtasks.RunRecord.MAX_EARLIER_ATTEMPTS` of
    them. Text as is (JSON escapes NUL and control characters; an ``ErrorInfo`` holds no
    lone surrogate), so it is about as long as the errors themselves."""
    return json.dumps(
        [
            {
                "number": attempt.number,
                "started_at": _utc_text(attempt.started_at),
                "finished_at": _utc_text(attempt.finished_at),
                "error": {
                    "type": attempt.error.type,
                    "message": attempt.error.message,
                    "traceback": attempt.error.traceback,
                },
            }
            for attempt in attempts[-MAX_EARLIER_ATTEMPTS:]
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_attempts(text: str) -> tuple[AttemptRecord, ...]:
    """The attempts :func:`encode_attempts` stored. NULL (none, or a row written before
    the column existed) never comes here: the run codec reads it as the empty tuple."""
    return tuple(
        AttemptRecord(
            number=item["number"],
            started_at=datetime.fromisoformat(item["started_at"]),
            finished_at=datetime.fromisoformat(item["finished_at"]),
            error=ErrorInfo(**item["error"]),
        )
        for item in json.loads(text)
    )


# -- runs: columns and codecs derived from RunRecord's fields ---------------------------
#
# A field added to RunRecord needs no edit here when its type is in the codec table: it
# joins RUN_COLUMNS, SAVE_RUN, encode_run and decode_run by itself. The table needs a
# migration adding its column (tests/test_record_fields.py fails until there is one).
#
# encode_run and decode_run run on the hot path (batched writes, history pages), so they
# are written out once, at import, as the straight-line code one would type by hand
# (print _RUN_CODEC_SOURCE to read it), as dataclasses do for __init__: no introspection
# or loop per call.


@dataclass(frozen=True, slots=True)
class _Codec:
    """How values of one type are stored in their column; ``None`` means as is."""

    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None


#: The codec of each field type. ``T | None`` uses the codec of ``T``: ``None`` is always
#: NULL and NULL always ``None``, so no codec sees them. Not in the table: a ``StrEnum``
#: (stored by value, read back by its class) and :class:`ErrorInfo` (one column per field
#: of its own, ``error_type``, ``error_message``, ``error_traceback``; ``None`` when the
#: first is NULL) and the earlier attempts (:func:`encode_attempts`, NULL when none: the
#: usual case costs no JSON).
_CODECS: dict[object, _Codec] = {
    str: _Codec(),
    int: _Codec(),
    datetime: _Codec(_utc_text, datetime.fromisoformat),
    Any: _Codec(dump_result, json.loads),  # result: bounded JSON text (see dump_result)
}


def _non_null(hint: Any) -> Any:
    """``T`` for ``T | None`` (and ``Optional[T]``), else ``hint`` itself."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _codec(name: str, kind: Any) -> _Codec:
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _Codec(str, kind)
    try:
        return _CODECS[kind]
    except (KeyError, TypeError):  # TypeError: an unhashable hint
        raise TypeError(
            f"RunRecord.{name}: no SQL codec for {kind!r}; add one to _CODECS"
        ) from None


class _RunCodecSource:
    """``encode_run`` and ``decode_run`` as source text, written field by field."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"RunRecord": RunRecord, "LIVE_STATUSES": _LIVE_STATUSES}
        self.columns: list[str] = []  # in row order
        self.reads: list[str] = []  # encode_run's locals: fields it tests for None first
        self.params: list[str] = []  # encode_run's tuple items, one per column
        self.kwargs: list[str] = []  # decode_run's arguments of RunRecord(...)

    def add(self, name: str, hint: Any) -> None:
        """Store field ``name`` of type ``hint``."""
        kind = _non_null(hint)
        cell = f"c{len(self.columns)}"
        if kind is ErrorInfo:
            parts = [part.name for part in fields(ErrorInfo)]
            cells = [f"c{len(self.columns) + i}" for i in range(len(parts))]
            self.columns += [f"{name}_{part}" for part in parts]
            self.reads.append(f"f_{name} = record.{name}")
            self.params += [f"None if f_{name} is None else f_{name}.{part}" for part in parts]
            self.namespace[f"decode_{name}"] = ErrorInfo
            self.kwargs.append(
                f"{name}=None if {cell} is None else decode_{name}({', '.join(cells)})"
            )
            return
        if kind == tuple[AttemptRecord, ...]:
            self.columns.append(name)
            self.reads.append(f"f_{name} = record.{name}")
            self.params.append(f"encode_attempts(f_{name}) if f_{name} else None")
            self.kwargs.append(f"{name}=() if {cell} is None else decode_attempts({cell})")
            self.namespace.update(encode_attempts=encode_attempts, decode_attempts=decode_attempts)
            return
        codec = _codec(name, kind)
        nullable = kind is not hint or kind is Any
        self.columns.append(name)
        if codec.encode is None:
            self.params.append(f"record.{name}")
        else:
            self.namespace[f"encode_{name}"] = codec.encode
            if nullable:
                self.reads.append(f"f_{name} = record.{name}")
                value = f"None if f_{name} is None else encode_{name}(f_{name})"
            else:
                value = f"encode_{name}(record.{name})"
            self.params.append(value)
        if codec.decode is None:
            self.kwargs.append(f"{name}={cell}")
        else:
            self.namespace[f"decode_{name}"] = codec.decode
            value = f"decode_{name}({cell})"
            self.kwargs.append(
                f"{name}=None if {cell} is None else {value}" if nullable else f"{name}={value}"
            )

    def render(self) -> str:
        """The source text: straight-line code, as one would type it by hand."""
        reads = "".join(f"    {line}\n" for line in self.reads)
        params = "".join(f"        {entry},\n" for entry in self.params)
        kwargs = "".join(f"        {argument},\n" for argument in self.kwargs)
        cells = ", ".join(f"c{i}" for i in range(len(self.columns)))
        return (
            f"def encode_run(record, expires):\n{reads}"
            "    live = record.status in LIVE_STATUSES\n"
            f"    return (\n{params}"
            "        record.replica if live else None,\n"
            "        expires if live else None,\n"
            "    )\n\n\n"
            f"def decode_run(row):\n    ({cells},) = row\n    return RunRecord(\n{kwargs}    )\n"
        )


def _run_codec() -> tuple[tuple[str, ...], str, dict[str, Any]]:
    """The columns of :class:`RunRecord`'s fields, and ``encode_run`` and ``decode_run``
    (their source and the namespace it runs in)."""
    hints = get_type_hints(RunRecord, localns={"datetime": datetime})
    source = _RunCodecSource()
    for field in fields(RunRecord):
        source.add(field.name, hints[field.name])
    return tuple(source.columns), source.render(), source.namespace


_RUN_COLUMN_NAMES, _RUN_CODEC_SOURCE, _namespace = _run_codec()
exec(compile(_RUN_CODEC_SOURCE, f"<{__name__}: RunRecord codec>", "exec"), _namespace)  # noqa: S102

#: The columns holding a run record's fields, in the order :func:`decode_run` reads them.
RUN_COLUMNS = ", ".join(_RUN_COLUMN_NAMES)

# A live snapshot (queued, waiting, running) gives its replica the lease until store time +
# lease_ttl; a final one clears it: the leased rows are exactly the live ones, which the
# reaper scans through runs_by_lease. A lost row is fenced: never updated.
_UPDATES = ",\n    ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMN_NAMES if c != "id")
SAVE_RUN = f"""
INSERT INTO runs ({RUN_COLUMNS}, lease_owner, lease_expires, change)
VALUES ({", ".join("?" * (len(_RUN_COLUMN_NAMES) + 3))})
ON CONFLICT (id) DO UPDATE SET
    {_UPDATES},
    lease_owner = excluded.lease_owner,
    lease_expires = excluded.lease_expires,
    change = excluded.change
WHERE runs.status != 'lost'
"""

# The live runs whose lease expired, through runs_by_lease (its WHERE is repeated so that
# the partial index applies). No status test: only live rows hold a lease (v4 gave one to
# those written before), and a test on status would lead the planner to runs_by_status,
# which scans every live run instead of the expired ones.
#: The runs changed after a number, oldest change first, through runs_by_change.
RUN_CHANGES = f"""
SELECT {RUN_COLUMNS}, change FROM runs WHERE change > ? AND change > 0 ORDER BY change LIMIT ?
"""

REAP_SCAN = f"""
SELECT {RUN_COLUMNS}, lease_owner FROM runs
WHERE lease_owner IS NOT NULL AND lease_expires < :now
"""


def _generated(name: str, doc: str) -> Any:
    function = _namespace[name]
    function.__module__ = __name__
    function.__doc__ = doc
    return function


encode_run: Callable[[RunRecord, float], tuple[Any, ...]] = _generated(
    "encode_run",
    "The parameters of :data:`SAVE_RUN`, in order (positional parameters bind faster "
    "than named ones); a live record's lease ends at ``expires``.",
)
decode_run: Callable[[Sequence[Any]], RunRecord] = _generated(
    "decode_run", "The record from a row of :data:`RUN_COLUMNS`."
)


def encode_audit(record: AuditRecord) -> dict[str, Any]:
    """The parameters of :data:`ADD_AUDIT`."""
    return {
        "id": record.id,
        "at": ts(record.at),
        "actor": record.actor,
        "action": record.action,
        "task": record.task,
        "outcome": record.outcome,
        "detail": record.detail,
    }


def decode_audit(row: Sequence[Any]) -> AuditRecord:
    """The record from a row of :data:`AUDIT_COLUMNS`."""
    id_, at, actor, action, task, outcome, detail = row
    return AuditRecord(
        id=id_,
        at=datetime.fromisoformat(at),
        actor=actor,
        action=action,
        task=task,
        outcome=outcome,
        detail=detail,
    )
