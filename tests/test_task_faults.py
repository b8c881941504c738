"""No task can hurt the scheduler: whatever it raises, returns or depends on.

A hostile exception (``__str__`` or type name that raises, a 10 MB message), a result that
cannot be encoded (``10**5000``, a ``__repr__`` that raises, 10 MB of text) and a chain of
dependencies deeper than the recursion limit are each run through a real ``Scheduler`` on
a SQLite file: the run is recorded, bounded, as read back from the file after the
scheduler stopped, and a second task still runs after it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from xtasks import Every, RunCause, RunRecord, RunStatus, Scheduler, Task
from xtasks._decisions import ClaimFire, RecordRun, StartAttempt
from xtasks._planner import Planner
from xtasks._runs import (
    MAX_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    MAX_TYPE_CHARS,
    ErrorInfo,
)
from xtasks.events import RunChanged
from xtasks.stores._sql import MAX_RESULT_CHARS, dump_result
from xtasks.stores.sqlite import SQLiteStore
from xtasks.testing import FakeClock
from xtasks_fastapi._live import EVENT_MESSAGE_CHARS, format_event, run_event_data
from xtasks_fastapi._schemas import MAX_RESULT_JSON, RunOut

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TEN_MB = 10 * 1024 * 1024


# --- hostile exceptions and results ---------------------------------------------------


class StrRaises(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise ValueError("str() is broken")


class StrExits(Exception):
    """An exception whose ``str()`` raises ``SystemExit``."""

    def __str__(self) -> str:
        raise SystemExit(3)


class _NamelessMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        if name in ("__qualname__", "__name__"):
            raise RuntimeError("no name for you")
        return super().__getattribute__(name)


class Nameless(Exception, metaclass=_NamelessMeta):
    """An exception whose type's ``__qualname__`` raises (traceback cannot format it)."""


class ReprRaises:
    """A result whose ``repr()`` raises (and which JSON cannot encode)."""

    def __repr__(self) -> str:
        raise RuntimeError("repr() is broken")


def raise_from(exc: BaseException) -> Callable[[], Any]:
    async def body() -> None:
        raise exc

    return body


def returning(value: object) -> Callable[[], Any]:
    async def body() -> object:
        return value

    return body


async def noop() -> None:
    pass


def _error_of(exc: BaseException) -> ErrorInfo:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - the point of the test
        return ErrorInfo.from_exception(caught)


# --- ErrorInfo: never raises, bounded -----------------------------------------------------


def test_an_exception_whose_str_raises_is_recorded_with_a_placeholder_saying_why() -> None:
    info = _error_of(StrRaises())
    assert info.type == "StrRaises"
    assert info.message == "<str() raised ValueError: str() is broken>"
    assert "in _error_of" in info.traceback


def test_a_str_raising_system_exit_is_caught_too() -> None:
    assert _error_of(StrExits()).message == "<str() raised SystemExit: 3>"


def test_a_type_whose_name_raises_keeps_its_real_name_and_its_frames() -> None:
    info = _error_of(Nameless("boom"))
    assert info.type == "Nameless"  # type's own slot, not the metaclass's lie
    assert info.message == "boom"
    assert info.traceback.startswith("Traceback (most recent call last):\n")
    assert "in _error_of" in info.traceback
    assert "<formatting the exception raised RuntimeError: no name for you>" in info.traceback


def test_a_10_mb_message_is_cut_to_the_bound_keeping_its_start_and_the_frames() -> None:
    message = "start " + "m" * TEN_MB + " end"
    info = _error_of(ValueError(message))
    assert len(info.message) <= MAX_MESSAGE_CHARS
    assert info.message.startswith("start mmm")
    assert info.message.endswith(
        f" [... {len(message) - len(info.message.split(' [...')[0]):,} characters cut]"
    )
    assert len(info.traceback) <= MAX_TRACEBACK_CHARS
    # the huge last line did not push the frames out
    assert info.traceback.startswith("Traceback (most recent call last):\n")
    assert "in _error_of" in info.traceback
    assert "characters cut ...]" in info.traceback


def test_a_long_traceback_keeps_its_end_where_the_error_is() -> None:
    exc: BaseException | None = None
    for n in range(300):  # a chain of 300 exceptions, each with a 500-character message
        try:
            raise KeyError(f"{n:03d}" + "k" * 500) from exc
        except KeyError as caught:
            exc = caught
    assert exc is not None
    info = ErrorInfo.from_exception(exc)
    assert len(info.traceback) <= MAX_TRACEBACK_CHARS
    assert info.traceback.startswith("[... ") and "characters cut ...]\n" in info.traceback
    assert info.traceback.rstrip().endswith("k'")  # the last exception's line
    assert "KeyError: '299" in info.traceback and "KeyError: '000" not in info.traceback


def test_text_utf8_cannot_encode_is_escaped() -> None:
    info = _error_of(ValueError("lone \ud800 surrogate"))
    assert info.message == "lone \\ud800 surrogate"
    info.message.encode()  # any store or channel can take it
    info.traceback.encode()


def test_an_error_info_built_directly_is_bounded_too() -> None:
    info = ErrorInfo("T" * 5000, "m" * (MAX_MESSAGE_CHARS + 1), "t" * (MAX_TRACEBACK_CHARS * 2))
    assert len(info.type) <= MAX_TYPE_CHARS
    assert len(info.message) <= MAX_MESSAGE_CHARS and info.message.endswith("characters cut]")
    assert len(info.traceback) <= MAX_TRACEBACK_CHARS
    assert info.traceback.startswith("[... ")
    small = ErrorInfo("ValueError", "bad", "tb")
    assert (small.type, small.message, small.traceback) == ("ValueError", "bad", "tb")


def test_short_forms_are_bounded_and_marked() -> None:
    info = ErrorInfo("ValueError", "x" * 10_000)
    assert len(info.short(200)) <= 200
    assert info.short(200).startswith("ValueError: xxx")
    assert info.short(200).endswith("characters cut]")
    assert len(info.short_message(300)) <= 300
    assert ErrorInfo("ValueError", "bad").short() == "ValueError: bad"
    tail = ErrorInfo("E", "m", "\n".join(["y" * 1000] * 5)).traceback_tail(20, 1500)
    assert len(tail) <= 1500 and tail.startswith("[... ")


# --- dump_result: never raises, bounded ----------------------------------------------------


def test_a_huge_int_is_stored_as_a_placeholder_saying_why() -> None:
    stored = json.loads(dump_result(10**5000) or "")
    assert stored.startswith("<repr() raised ValueError: Exceeds the limit")


def test_a_result_whose_repr_raises_is_stored_as_a_placeholder() -> None:
    assert (
        json.loads(dump_result(ReprRaises()) or "")
        == "<repr() raised RuntimeError: repr() is broken>"
    )
    nested = json.loads(dump_result({"a": [ReprRaises()]}) or "")
    assert nested == "<repr() raised RuntimeError: repr() is broken>"


@pytest.mark.parametrize(
    "value",
    [
        "x" * TEN_MB,
        '"\\' * 100_000,  # JSON doubles each character
        "é\ud800" * 100_000,  # JSON writes each as six
    ],
    ids=["10MB", "escapes", "non-ascii"],
)
def test_a_long_string_keeps_its_start_within_the_bound(value: str) -> None:
    text = dump_result(value) or ""
    assert len(text) <= MAX_RESULT_CHARS
    stored = json.loads(text)
    assert stored.endswith("characters cut]")
    kept = stored.rsplit(" [... ", 1)[0]
    assert value.startswith(kept) and len(kept) > 1000
    assert stored.endswith(f"[... {len(value) - len(kept):,} characters cut]")
    # as much as the bound holds: one character more would not fit
    more = value[: len(kept) + 1]
    assert len(json.dumps(f"{more} [... {len(value) - len(more):,} characters cut]")) > (
        MAX_RESULT_CHARS
    )


class _Hostile(str):
    """A string whose own methods raise: only its characters can be read."""

    def __getitem__(self, key: object) -> str:
        raise RuntimeError("no slicing")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class _ReprIsHostile:
    def __repr__(self) -> str:
        return _Hostile("r" * 100_000)


@pytest.mark.parametrize("value", [_Hostile("s" * 100_000), _ReprIsHostile()], ids=type)
def test_a_long_str_subclass_is_cut_as_its_plain_text(value: object) -> None:
    """A string subclass, returned or returned by ``repr()``, is cut as the characters it
    holds, whatever its own methods do."""
    text = dump_result(value) or ""
    assert len(text) <= MAX_RESULT_CHARS
    stored = json.loads(text)
    letter = "s" if isinstance(value, str) else "r"
    assert stored.startswith(letter * 1000) and stored.endswith(" characters cut]")
    kept = stored.rsplit(" [... ", 1)[0]
    assert kept == letter * len(kept)
    assert stored.endswith(f" [... {100_000 - len(kept):,} characters cut]")


def test_a_large_structure_is_stored_as_a_string_holding_the_start_of_its_json() -> None:
    text = dump_result(list(range(1_000_000))) or ""
    assert len(text) <= MAX_RESULT_CHARS
    stored = json.loads(text)
    whole = json.dumps(list(range(1_000_000)))
    head = f"<result of {len(whole):,} characters of JSON, cut: "
    assert stored.startswith(head + "[0, 1, 2, 3,") and stored.endswith(">")
    kept = stored[len(head) : -1]
    assert whole.startswith(kept)
    assert len(json.dumps(f"{head}{whole[: len(kept) + 1]}>")) > MAX_RESULT_CHARS  # all it holds


def test_ordinary_results_are_unchanged() -> None:
    assert dump_result(None) is None
    for value in (1, "text", [1, "x", None], {"a": 1.5}):
        assert json.loads(dump_result(value) or "") == value


def test_the_api_shows_any_result_without_raising() -> None:
    base = RunRecord(
        id="r", task="t", status=RunStatus.SUCCEEDED, cause=RunCause.MANUAL, scheduled_at=T0
    )
    for value, shown in [
        (10**5000, "<repr() raised ValueError: Exceeds the limit"),
        (ReprRaises(), "<ReprRaises instance at"),
        ("y" * TEN_MB, '"yyyy'),  # JSON: its text's start, the cut marked
    ]:
        out = RunOut.from_core(base.evolve(result=value))
        assert isinstance(out.result, str) and out.result.startswith(shown)
        assert len(out.result) <= MAX_RESULT_JSON
        out.model_dump_json()


# --- end to end: a real scheduler on a SQLite file ------------------------------------------


async def _run_then_read_back(tmp_path: Path, task: Task) -> tuple[RunRecord, RunRecord]:
    """Run ``task`` then a well-behaved one; return the stored record of each."""
    path = tmp_path / "xtasks.db"
    scheduler = Scheduler(store=f"sqlite:///{path}", plugins=False)
    scheduler.add(task)
    scheduler.add(Task("after", returning("still here")))
    with anyio.fail_after(30):
        async with scheduler:
            bad = await scheduler.trigger(task.name)
            await bad.wait()
            after = await scheduler.run("after")
    assert after.status is RunStatus.SUCCEEDED
    store = SQLiteStore(path)
    await store.open()
    try:
        stored_bad = await store.get_run(bad.id)
        stored_after = await store.get_run(after.id)
    finally:
        await store.close()
    assert stored_bad is not None and stored_after is not None
    return stored_bad, stored_after


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (StrRaises(), "<str() raised ValueError: str() is broken>"),
        (Nameless("boom"), "boom"),
    ],
    ids=["str-raises", "nameless-type"],
)
async def test_a_hostile_exception_is_recorded_failed_and_the_scheduler_goes_on(
    tmp_path: Path, exc: Exception, message: str
) -> None:
    record, after = await _run_then_read_back(tmp_path, Task("bad", raise_from(exc)))
    assert record.status is RunStatus.FAILED and record.error is not None
    assert record.error.type == type.__dict__["__qualname__"].__get__(type(exc), type)
    assert record.error.message == message
    assert "in body" in record.error.traceback
    assert after.result == "still here"


@pytest.mark.anyio
async def test_a_10_mb_message_is_stored_bounded_and_logged_and_streamed_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = Task("bad", raise_from(RuntimeError("e" * TEN_MB)), alert_on_failure=True)
    with caplog.at_level(logging.DEBUG):
        record, _after = await _run_then_read_back(tmp_path, task)
    assert record.status is RunStatus.FAILED and record.error is not None
    assert record.error.type == "RuntimeError"
    assert len(record.error.message) <= MAX_MESSAGE_CHARS
    assert record.error.message.startswith("eeee") and record.error.message.endswith(
        "characters cut]"
    )
    assert (
        len(record.error.traceback) <= MAX_TRACEBACK_CHARS and "in body" in record.error.traceback
    )
    # the failing alert's log line is there, and short
    alert_lines = [r for r in caplog.records if r.name == "xtasks.alerts"]
    assert alert_lines and "RuntimeError: eeee" in alert_lines[0].getMessage()
    assert max(len(r.getMessage()) for r in caplog.records) < 2 * 1024
    # a live event carries the start of the message only
    data = run_event_data(record)
    assert len(data["error"]["message"]) <= EVENT_MESSAGE_CHARS
    event = format_event(RunChanged(record=record))
    assert event is not None and len(event) < 4 * 1024


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "check"),
    [
        (10**5000, lambda r: r.startswith("<repr() raised ValueError: Exceeds the limit")),
        (ReprRaises(), lambda r: r == "<repr() raised RuntimeError: repr() is broken>"),
        ("z" * TEN_MB, lambda r: r.startswith("zzz") and r.endswith("characters cut]")),
        (list(range(2_000_000)), lambda r: r.startswith("<result of ")),
    ],
    ids=["10**5000", "repr-raises", "10MB-string", "huge-list"],
)
async def test_an_unstorable_result_is_recorded_succeeded_with_a_placeholder(
    tmp_path: Path, value: object, check: Callable[[Any], bool]
) -> None:
    record, after = await _run_then_read_back(tmp_path, Task("odd", returning(value)))
    assert record.status is RunStatus.SUCCEEDED
    assert isinstance(record.result, str) and check(record.result), str(record.result)[:200]
    assert len(json.dumps(record.result)) <= MAX_RESULT_CHARS
    assert after.result == "still here"


# --- dependency chains deeper than the recursion limit -----------------------------------

#: Deep enough that any recursion along the chain would fail, whatever the limit is set to.
DEEP = 100_000


def _chain_tasks(n: int) -> list[Task]:
    """``t0 <- t1 <- ... <- t{n-1}``; the last one fires every minute."""
    tasks = [Task("t0", noop)]
    tasks += [Task(f"t{i}", noop, depends_on=f"t{i - 1}") for i in range(1, n - 1)]
    tasks.append(Task(f"t{n - 1}", noop, depends_on=f"t{n - 2}", trigger=Every(minutes=1)))
    return tasks


def _records(decisions: list[Any]) -> list[RunRecord]:
    return [d.record for d in decisions if isinstance(d, RecordRun)]


def test_a_100_000_deep_chain_opens_upstream_first_and_skips_all_on_a_root_failure() -> None:
    chain = _chain_tasks(DEEP)
    planner = Planner()
    for task in chain:
        planner.add_task(task, T0)
    planner.start(T0)
    planner.drain(T0)
    began = time.perf_counter()

    # the last task's timer fires: every run of the chain opens, upstream first; the
    # root is due (then started), the others wait
    fire = T0 + timedelta(minutes=1)
    planner.advance(fire)
    (claim,) = [d for d in planner.drain(fire) if isinstance(d, ClaimFire)]
    assert claim.task == f"t{DEEP - 1}"
    planner.fire_claimed(claim, fire)
    decisions = planner.drain(fire)
    opened = _records(decisions)
    assert [r.task for r in opened[:DEEP]] == [t.name for t in chain]
    assert opened[0].status is RunStatus.QUEUED
    assert {r.status for r in opened[1:DEEP]} == {RunStatus.WAITING}
    (start,) = [d for d in decisions if isinstance(d, StartAttempt)]
    assert start.task.name == "t0"

    # the root fails: every run downstream is skipped, each naming its direct dependency
    planner.attempt_failed(start.run_id, fire, ErrorInfo("RuntimeError", "root broke"))
    ended = _records(planner.drain(fire))
    assert ended[0].task == "t0" and ended[0].status is RunStatus.FAILED
    skipped = ended[1:]
    assert [r.task for r in skipped] == [t.name for t in chain[1:]]
    assert {r.status for r in skipped} == {RunStatus.SKIPPED}
    assert skipped[0].reason == "upstream_failed: t0"
    assert [r.reason for r in skipped[1:]] == [
        f"upstream_skipped: t{i}" for i in range(1, DEEP - 1)
    ]
    assert planner.live_runs() == []

    # a manual request of the last task opens the whole chain again
    planner.request(f"t{DEEP - 1}", fire)
    assert len(_records(planner.drain(fire))) == DEEP + 1  # the root also starts
    # about 3 s on a loaded 2-core machine (building the 100,000 tasks takes as long)
    assert time.perf_counter() - began < 60


@pytest.mark.anyio
async def test_a_chain_deeper_than_the_recursion_limit_fires_fails_and_skips_end_to_end(
    tmp_path: Path,
) -> None:
    depth = 3_000
    path = tmp_path / "xtasks.db"
    clock = FakeClock(T0)
    scheduler = Scheduler(store=f"sqlite:///{path}", plugins=False, clock=clock)
    tasks = _chain_tasks(depth)
    tasks[0] = Task("t0", raise_from(RuntimeError("root broke")))
    for task in tasks:
        scheduler.add(task)
    scheduler.add(Task("after", returning("still here")))
    last = tasks[-1].name
    ended = anyio.Event()
    finals: list[RunRecord] = []

    def on_change(event: RunChanged) -> None:
        if event.record.task == last and event.record.status.is_final:
            finals.append(event.record)
            ended.set()

    scheduler.subscribe(on_change, RunChanged)
    with anyio.fail_after(60):
        async with scheduler:
            await clock.advance(60)  # the last task's timer fires: the whole chain opens
            await ended.wait()
            after = await scheduler.run("after")
    assert after.status is RunStatus.SUCCEEDED
    store = SQLiteStore(path)
    await store.open()
    try:
        (root,) = await store.list_runs(task="t0")
        skipped = await store.list_runs(statuses=[RunStatus.SKIPPED], limit=depth)
        (stored_last,) = await store.list_runs(task=last)
    finally:
        await store.close()
    assert root.status is RunStatus.FAILED and root.error is not None
    assert root.error.message == "root broke"
    assert len(skipped) == depth - 1
    assert stored_last == finals[0]
    assert stored_last.reason == f"upstream_skipped: t{depth - 2}"


def test_a_result_of_exactly_64_kib_of_json_is_kept_whole_one_more_is_cut() -> None:
    """README: the SQLite store keeps at most 64 KiB (65,536 characters) of a result's
    JSON text: a result of exactly that is kept as it is, one character more is cut."""
    assert MAX_RESULT_CHARS == 65_536  # the bound README states
    exact = "x" * (65_536 - 2)  # its JSON adds the two quotes
    assert dump_result(exact) == json.dumps(exact)
    assert json.loads(dump_result(exact + "x") or "").endswith("characters cut]")
