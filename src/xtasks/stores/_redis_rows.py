"""How :class:`~xtasks.stores.redis.RedisStore` writes records into Redis, and reads them.

A run is its :func:`~xtasks.stores._sql.encode_run` columns as one JSON array (so results
round-trip as on SQLite: bounded JSON text, ``repr()`` for what JSON cannot encode), beside
the fields the scripts read apart (status, task, sort key, age, lease owner); an array
written before a column was added (``earlier_attempts``, ``executor``, ``worker``) is
shorter, and reads there as its field's default when that is text (``executor``: ``""``),
else as NULL. Times the scripts compare or sort are 20 digits, ``YYYYMMDDhhmmssffffff`` in UTC:
fixed width, so byte order is time order. An audit record is a sorted-set member: ``at`` (20 digits), its
insertion number (16) and its other fields as JSON, the task first.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._runs import AuditRecord, RunRecord
from . import _sql

if TYPE_CHECKING:
    from .._runs import TaskRecord

__all__ = [
    "decode_audit",
    "decode_run",
    "encode_audit",
    "encode_run",
    "key",
    "maybe_time",
    "task_fields",
    "time_of",
]

_COLUMNS = _sql.RUN_COLUMNS.split(", ")
_STATUS, _REASON = _COLUMNS.index("status"), _COLUMNS.index("reason")
_TEXT_DEFAULTS = {f.name: f.default for f in fields(RunRecord) if isinstance(f.default, str)}
#: What each column of an array too short to hold it reads as (see the module's docstring).
_PADDING = [_TEXT_DEFAULTS.get(column) for column in _COLUMNS]


def key(value: datetime) -> str:
    """A datetime as 20 digits, ``YYYYMMDDhhmmssffffff`` in UTC: text order is time order."""
    t = _sql.ts(value) or ""
    return t[0:4] + t[5:7] + t[8:10] + t[11:13] + t[14:16] + t[17:19] + t[20:26]


def time_of(digits: str) -> datetime:
    """The datetime of a :func:`key`."""
    year, month, day, hour, minute, second, micro = (
        int(digits[a:b]) for a, b in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14), (14, 20))
    )
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def maybe_time(digits: str | None) -> datetime | None:
    return time_of(digits) if digits else None


def encode_run(record: RunRecord) -> list[str]:
    """The fields ``SAVE_RUNS`` takes for ``record``."""
    row = _sql.encode_run(record, 0.0)[: len(_COLUMNS)]
    age = (record.finished_at or record.scheduled_at).timestamp()
    return [
        record.id,
        record.task,
        str(record.status),
        key(record.scheduled_at),
        json.dumps(row, separators=(",", ":")),
        record.replica,
        repr(age),
    ]


def decode_run(data: str, status: str, reason: str | None) -> RunRecord:
    row = json.loads(data)
    if len(row) < len(_COLUMNS):  # written before the last columns existed
        row += _PADDING[len(row) :]
    row[_STATUS] = status
    if reason is not None:  # given by reap_lost, after the record was written
        row[_REASON] = reason
    return _sql.decode_run(row)


def task_fields(record: TaskRecord) -> list[Any]:
    """The fields ``SAVE_TASKS`` and ``CHANGE_STATE`` take for ``record``, after its name."""
    return [
        str(record.state),
        "" if record.last_fire is None else key(record.last_fire),
        record.consecutive_failures,
        int(record.alerting),
        "" if record.anchor is None else key(record.anchor),
        "" if record.definition is None else "=" + record.definition,
    ]


def encode_audit(record: AuditRecord) -> str:
    """The JSON part of an audit record's member: the task first, for the scripts."""
    fields = [record.task, record.id, record.actor, record.action, record.outcome, record.detail]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def decode_audit(member: str) -> AuditRecord:
    task, id_, actor, action, outcome, detail = json.loads(member[36:])
    return AuditRecord(
        id=id_,
        at=time_of(member[:20]),
        actor=actor,
        action=action,
        task=task,
        outcome=outcome,
        detail=detail,
    )
