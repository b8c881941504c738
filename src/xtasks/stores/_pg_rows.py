"""Rows of :class:`~xtasks.stores.postgres.PostgresStore` to records and back.

What :mod:`~xtasks.stores._sql` encodes for SQLite, plus what PostgreSQL needs.

**NUL.** PostgreSQL text cannot hold ``"\\x00"``, nor UTF-8 a lone surrogate (an exception
message may hold either): each text value goes through :func:`escape`, which writes NUL as
``U+E000 0``, ``U+E000`` itself as ``U+E000 1`` and a lone surrogate as ``U+E000 2`` and
its four hex digits, and comes back through :func:`unescape`. Text with none of them (all
real text) is stored as is, and equal strings stay equal, so keys and filters still match.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .._runs import TaskRecord, TaskState
from . import _sql
from ._pg_schema import RUN_ROW_KEYS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .._runs import RunRecord

__all__ = [
    "decode_run",
    "decode_task",
    "escape",
    "escape_row",
    "run_rows",
    "task_row",
    "task_rows",
    "unescape",
    "unescape_row",
]


def run_rows(records: Iterable[RunRecord]) -> str:
    """``records`` as the JSON array of rows ``save_runs`` upserts in one statement.

    One row per id (an upsert may touch a row once per statement): the last record of an
    id, where its first stands (the order new runs are inserted in). The same as saving
    them one by one: only ``reap_lost`` makes a run lost, so a record of a batch is
    refused exactly when its id was lost before the batch.
    """
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        values = escape_row(_sql.encode_run(record, 0.0)[:-1])  # the lease: server time
        rows[values[0]] = dict(zip(RUN_ROW_KEYS, values, strict=True))
    return json.dumps(list(rows.values()))


def decode_run(row: Sequence[Any]) -> RunRecord:
    """The record from a row of ``_sql.RUN_COLUMNS``."""
    return _sql.decode_run(unescape_row(row))


def task_row(task: str, record: TaskRecord) -> dict[str, Any]:
    """A ``tasks`` row of ``record``, keyed by column."""
    return {
        "name": escape(task),
        "state": str(record.state),
        "last_fire": _sql.ts(record.last_fire),
        "consecutive_failures": record.consecutive_failures,
        "alerting": record.alerting,
        "anchor": _sql.ts(record.anchor),
        "definition": None if record.definition is None else escape(record.definition),
    }


def task_rows(records: Mapping[str, TaskRecord]) -> str:
    """``records`` as the JSON array of rows ``save_tasks`` upserts in one statement."""
    return json.dumps([task_row(task, record) for task, record in records.items()])


def decode_task(row: Sequence[Any]) -> tuple[str, TaskRecord]:
    """The task and its record, from a row of name, state, last_fire,
    consecutive_failures, alerting, anchor, definition."""
    name, state, last_fire, failures, alerting, anchor, definition = row
    return unescape(name), TaskRecord(
        state=TaskState(state),
        last_fire=_sql.dt(last_fire),
        consecutive_failures=failures,
        alerting=alerting,
        anchor=_sql.dt(anchor),
        definition=None if definition is None else unescape(definition),
    )


# -- text: NUL and lone surrogates cannot be stored ---------------------------------------

_ESC = "\ue000"
_SPECIAL = re.compile("[\x00\ue000\ud800-\udfff]")
_ESCAPED = re.compile(f"{_ESC}(?:[01]|2[0-9a-f]{{4}})")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\x00":
        return f"{_ESC}0"
    if char == _ESC:
        return f"{_ESC}1"
    return f"{_ESC}2{ord(char):04x}"  # a lone surrogate (os.fsdecode of a bad file name)


def _unescaped(match: re.Match[str]) -> str:
    code = match.group()[1:]
    if code == "0":
        return "\x00"
    if code == "1":
        return _ESC
    return chr(int(code[1:], 16))


def escape(text: str) -> str:
    """``text`` as stored: NUL, lone surrogates (which UTF-8 cannot encode) and the
    escape character itself escaped (see the module's docstring)."""
    return text if _SPECIAL.search(text) is None else _SPECIAL.sub(_escaped, text)


def unescape(text: str) -> str:
    """The text :func:`escape` stored."""
    return _ESCAPED.sub(_unescaped, text) if _ESC in text else text


def escape_row(row: Sequence[Any]) -> list[Any]:
    """``row`` with each text value escaped."""
    return [escape(v) if type(v) is str else v for v in row]


def unescape_row(row: Sequence[Any]) -> list[Any]:
    """``row`` with each text value unescaped."""
    return [unescape(v) if type(v) is str else v for v in row]
