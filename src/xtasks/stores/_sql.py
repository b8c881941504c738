"""Schema and statements of the SQL stores (SQLite today; PostgreSQL can start from these).

The statements stick to SQL that PostgreSQL also speaks where SQLite allows it
(``ON CONFLICT ... DO``, window functions, no ``INSERT OR IGNORE``); the placeholders
(``:name``), the column types and the two-argument ``MAX`` (``GREATEST`` there) are SQLite's. Times are UTC ISO-8601 text with microseconds
(``2026-01-01T00:00:00.000000+00:00``): fixed width, so text order is time order, readable
in a shell, and read back as equal, aware UTC datetimes (a naive one is refused with
``ValueError``). Leases are ``REAL`` Unix seconds of store time. ``result`` is JSON text
(``None`` is NULL): tuples come back as lists and keys as strings, and a result JSON cannot
encode is stored as its ``repr()`` string.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._runs import AuditRecord, ErrorInfo, RunCause, RunRecord, RunStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ADD_AUDIT",
    "AUDIT_COLUMNS",
    "CLAIM",
    "CLAIMED_LAST_FIRE",
    "LIVE",
    "MIGRATIONS",
    "PRUNE_AGE",
    "PRUNE_AUDIT_AGE",
    "PRUNE_CLAIMS",
    "PRUNE_CLAIM_FLOORS",
    "PRUNE_COUNT",
    "REAP",
    "RENEW",
    "RUN_COLUMNS",
    "SAVE_RUN",
    "SAVE_TASK",
    "decode_audit",
    "decode_run",
    "dt",
    "encode_audit",
    "encode_run",
    "ts",
    "ts_epoch",
]

#: Statuses of runs still in flight: retention never deletes them.
LIVE = ", ".join(f"'{s.value}'" for s in (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING))

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
]

RUN_COLUMNS = (
    "id, task, status, trigger, scheduled_at, started_at, finished_at, attempts, "
    "error_type, error_message, error_traceback, reason, result, replica"
)

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

# Running sets the lease, a final status clears it, a queued or waiting snapshot (a retry
# between attempts) leaves it as it is: still held, but only running runs are reaped.
# A lost row is fenced: never updated.
SAVE_RUN = f"""
INSERT INTO runs ({RUN_COLUMNS}, lease_owner, lease_expires)
VALUES (:id, :task, :status, :trigger, :scheduled_at, :started_at, :finished_at, :attempts,
        :error_type, :error_message, :error_traceback, :reason, :result, :replica,
        :lease_owner, :lease_expires)
ON CONFLICT (id) DO UPDATE SET
    task = excluded.task, status = excluded.status, trigger = excluded.trigger,
    scheduled_at = excluded.scheduled_at, started_at = excluded.started_at,
    finished_at = excluded.finished_at, attempts = excluded.attempts,
    error_type = excluded.error_type, error_message = excluded.error_message,
    error_traceback = excluded.error_traceback, reason = excluded.reason,
    result = excluded.result, replica = excluded.replica,
    lease_owner = CASE WHEN excluded.status IN ('queued', 'waiting')
                       THEN runs.lease_owner ELSE excluded.lease_owner END,
    lease_expires = CASE WHEN excluded.status IN ('queued', 'waiting')
                         THEN runs.lease_expires ELSE excluded.lease_expires END
WHERE runs.status != 'lost'
"""

RENEW = "UPDATE runs SET lease_expires = :expires WHERE id = :id AND lease_owner = :replica"

REAP = """
UPDATE runs SET status = 'lost', reason = :reason,
    lease_owner = NULL, lease_expires = NULL, epoch = epoch + 1
WHERE id = :id
"""

SAVE_TASK = """
INSERT INTO tasks (name, state, last_fire, consecutive_failures, alerting, anchor)
VALUES (:name, :state, :last_fire, :consecutive_failures, :alerting, :anchor)
ON CONFLICT (name) DO UPDATE SET
    state = excluded.state,
    last_fire = COALESCE(MAX(tasks.last_fire, excluded.last_fire),
                         tasks.last_fire, excluded.last_fire),
    consecutive_failures = excluded.consecutive_failures,
    alerting = excluded.alerting,
    anchor = COALESCE(tasks.anchor, excluded.anchor)
"""

PRUNE_COUNT = f"""
DELETE FROM runs WHERE status NOT IN ({LIVE}) AND seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY task ORDER BY scheduled_at DESC, seq DESC) AS n
        FROM runs)
    WHERE n > :keep)
"""

PRUNE_AGE = f"""
DELETE FROM runs WHERE status NOT IN ({LIVE}) AND COALESCE(finished_at, scheduled_at) < :cutoff
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


def ts(value: datetime | None) -> str | None:
    """A datetime as stored: UTC ISO-8601 text with microseconds."""
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: a store needs aware datetimes")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def ts_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def dump_result(result: Any) -> str | None:
    if result is None:
        return None
    try:
        return json.dumps(result)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(result))


def encode_run(record: RunRecord, expires: float) -> dict[str, Any]:
    """The parameters of :data:`SAVE_RUN`; a running record's lease ends at ``expires``."""
    error = record.error
    running = record.status is RunStatus.RUNNING
    return {
        "id": record.id,
        "task": record.task,
        "status": str(record.status),
        "trigger": str(record.cause),
        "scheduled_at": ts(record.scheduled_at),
        "started_at": ts(record.started_at),
        "finished_at": ts(record.finished_at),
        "attempts": record.attempts,
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
        "error_traceback": None if error is None else error.traceback,
        "reason": record.reason,
        "result": dump_result(record.result),
        "replica": record.replica,
        "lease_owner": record.replica if running else None,
        "lease_expires": expires if running else None,
    }


def decode_run(row: Sequence[Any]) -> RunRecord:
    """The record from a row of :data:`RUN_COLUMNS`."""
    (id_, task, status, trigger, scheduled, started, finished, attempts) = row[:8]
    error_type, message, traceback, reason, result, replica = row[8:]
    return RunRecord(
        id=id_,
        task=task,
        status=RunStatus(status),
        cause=RunCause(trigger),
        scheduled_at=datetime.fromisoformat(scheduled),
        started_at=dt(started),
        finished_at=dt(finished),
        attempts=attempts,
        error=None if error_type is None else ErrorInfo(error_type, message, traceback),
        reason=reason,
        result=None if result is None else json.loads(result),
        replica=replica,
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
