"""What every check shares: the store factory's type, time and id helpers, the
require helpers that name what differs, and opening store objects as replicas."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

import anyio

from ..._runs import (
    AttemptRecord,
    RunCause,
    RunRecord,
    RunStatus,
    TaskRecord,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from ...abc import Store


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


def _field_differences(expected: Any, actual: Any) -> list[str]:
    """``name: expected ..., got ...`` for each field of a dataclass record that differs."""
    return [
        f"{field.name}: expected {getattr(expected, field.name)!r}, "
        f"got {getattr(actual, field.name)!r}"
        for field in dataclasses.fields(expected)
        if getattr(expected, field.name) != getattr(actual, field.name)
    ]


def _require_record(what: str, expected: RunRecord, actual: RunRecord | None) -> None:
    """Fail unless ``actual`` equals ``expected`` field by field, with aware UTC datetimes."""
    if actual is None:
        _fail(f"{what}: got None, expected run {expected.id!r}")
    if not isinstance(actual, RunRecord):
        _fail(f"{what}: got {type(actual).__name__} {actual!r}, expected a RunRecord")
    problems = _field_differences(expected, actual)
    problems += [
        f"{name}: {getattr(actual, name)!r} is not an aware UTC datetime"
        for name in _DATETIME_FIELDS
        if _not_utc(getattr(actual, name))
    ]
    attempts = actual.earlier_attempts
    if type(attempts) is not tuple or not all(type(a) is AttemptRecord for a in attempts):
        problems.append(f"earlier_attempts: {attempts!r} is not a tuple of AttemptRecord")
    else:
        problems += [
            f"earlier_attempts[{i}].{name}: {getattr(attempt, name)!r} is not an aware UTC datetime"
            for i, attempt in enumerate(attempts)
            for name in ("started_at", "finished_at")
            if _not_utc(getattr(attempt, name))
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
