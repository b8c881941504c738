"""What history keeps of a failed run's exception: the user's code first, not ours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from xtasks import ErrorInfo, RunStatus, Scheduler, Task

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


def sync_boom() -> None:
    raise ValueError("sync kaput")


async def async_boom() -> None:
    raise ValueError("async kaput")


@pytest.mark.parametrize("func", [sync_boom, async_boom])
async def test_a_recorded_traceback_starts_at_the_tasks_function(func: Callable[[], Any]) -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("boom", func))
    async with scheduler:
        record = await (await scheduler.trigger("boom")).wait()
    assert record.status is RunStatus.FAILED and record.error is not None
    frames = [line for line in record.error.traceback.splitlines() if line.startswith("  File")]
    assert frames, record.error.traceback
    assert frames[0].endswith(f"in {func.__name__}")
    assert "xtasks" not in record.error.traceback.replace(__file__, "")
    assert "anyio" not in record.error.traceback and "trio" not in record.error.traceback


def test_an_exception_raised_by_the_machinery_itself_keeps_its_whole_traceback() -> None:
    try:
        raise RuntimeError("no user frame at all")
    except RuntimeError as exc:
        info = ErrorInfo.from_exception(exc)
    assert "test_run_errors.py" in info.traceback
    assert info.traceback.rstrip().endswith("RuntimeError: no user frame at all")


async def test_a_process_task_keeps_the_traceback_of_its_worker_process() -> None:
    scheduler = Scheduler(plugins=False, process_slots=1)
    scheduler.add(Task("boom", sync_boom, mode="process"))
    async with scheduler:
        record = await (await scheduler.trigger("boom")).wait()
    assert record.error is not None
    text = record.error.traceback
    assert text.startswith("ValueError: sync kaput\nTraceback in the worker process")
    assert 'in sync_boom\n    raise ValueError("sync kaput")' in text
    assert "_executors.py" not in text and "anyio" not in text


def test_traceback_tail_keeps_the_end_and_says_what_it_left_out() -> None:
    tb = "\n".join(f"line {n}" for n in range(1, 11)) + "\n"
    info = ErrorInfo("ValueError", "bad", tb)
    assert info.traceback_tail(10) == tb.rstrip("\n")
    assert info.traceback_tail(3) == "[... 7 earlier line(s) left out ...]\nline 8\nline 9\nline 10"
