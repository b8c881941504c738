"""Sync calls in threads, on both backends: the result or exception comes back as itself,
the caller's context goes along, and a cancelled call returns at once while its thread
goes on without holding up the calls after it.

Waits are on events and handles, never on sleeps.
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from xtasks import RunStatus, Scheduler, Task
from xtasks._executors import Executors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.anyio

_request: contextvars.ContextVar[str] = contextvars.ContextVar("_request", default="none")
#: Long enough for any loaded machine; only reached when a test is broken.
_WAIT = 10.0


def _task(func: Callable[..., Any], **options: Any) -> Task:
    task = Task(func.__name__, func, **options)
    assert task.mode.value == "sync"
    return task


@contextmanager
def _executors(thread_slots: int = 2) -> Iterator[Executors]:
    executors = Executors(thread_slots=thread_slots, process_slots=1)
    try:
        yield executors
    finally:
        executors.close_now()


def _slots_beside_a_stuck_call(anyio_backend: str) -> int:
    """On asyncio an abandoned call gives its slot back at once (as ``anyio.to_thread``
    did there); trio's ``to_thread`` holds it until the thread returns."""
    return 1 if anyio_backend == "asyncio" else 2


async def test_a_sync_call_runs_in_another_thread_with_the_caller_s_context() -> None:
    def where(x: int, *, y: int) -> tuple[int, str, int]:
        seen = _request.get()
        _request.set("changed in the thread")
        return threading.get_ident(), seen, x + y

    _request.set("req-1")
    with _executors() as executors:
        ident, seen, total = await executors.call(
            _task(where, args=(1,), kwargs={"y": 2}), (1,), {"y": 2}
        )
    assert ident != threading.get_ident()
    assert (seen, total) == ("req-1", 3)
    assert _request.get() == "req-1"  # the thread ran in a copy


async def test_a_sync_call_may_call_back_into_the_loop_with_anyio_from_thread() -> None:
    async def on_the_loop() -> int:
        await anyio.lowlevel.checkpoint()
        return threading.get_ident()

    def calls_back() -> tuple[int, int]:
        return threading.get_ident(), anyio.from_thread.run(on_the_loop)

    with _executors() as executors:
        in_thread, on_loop = await executors.call(_task(calls_back), (), {})
    assert on_loop == threading.get_ident() != in_thread


@pytest.mark.parametrize(
    ("raised", "expected"),
    [(ValueError("bad"), ValueError), (SystemExit(3), SystemExit), (StopIteration(), RuntimeError)],
)
async def test_what_a_sync_call_raises_comes_back(
    raised: BaseException, expected: type[BaseException]
) -> None:
    def fails() -> None:
        raise raised

    with _executors() as executors, pytest.raises(expected):
        await executors.call(_task(fails), (), {})


async def test_a_cancelled_call_returns_at_once_and_its_thread_goes_on(anyio_backend: str) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(_WAIT)
        finished.set()

    def quick() -> str:
        return "done"

    with _executors(_slots_beside_a_stuck_call(anyio_backend)) as executors:
        with anyio.fail_after(_WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(executors.call, _task(stuck), (), {})
                await anyio.to_thread.run_sync(started.wait, _WAIT)
                tg.cancel_scope.cancel()  # the call is abandoned, not waited for
            assert not finished.is_set()
            # The abandoned call keeps its thread; the next one gets another.
            assert await executors.call(_task(quick), (), {}) == "done"
        assert not finished.is_set()
        release.set()
        assert finished.wait(_WAIT)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's threads are trio's
async def test_threads_are_bounded_by_the_slots_and_end_when_closed() -> None:
    release = threading.Event()
    used: set[threading.Thread] = set()

    def blocks() -> None:
        used.add(threading.current_thread())
        release.wait(_WAIT)

    async def one(executors: Executors) -> None:
        await executors.call(_task(blocks), (), {})

    with _executors(thread_slots=3) as executors, anyio.fail_after(_WAIT):
        for _ in range(3):  # one round after another: the idle threads are used again
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one, executors)
                await anyio.lowlevel.checkpoint()
                release.set()
            release.clear()
    assert 1 <= len(used) <= 3
    assert {t.name for t in used} == {"xtasks-sync"}
    for thread in used:
        thread.join(_WAIT)
        assert not thread.is_alive()


async def test_a_sync_run_that_times_out_is_recorded_at_once_while_its_thread_goes_on(
    anyio_backend: str,
) -> None:
    release, finished = threading.Event(), threading.Event()

    def hangs() -> None:
        release.wait(_WAIT)
        finished.set()

    scheduler = Scheduler(thread_slots=_slots_beside_a_stuck_call(anyio_backend))
    scheduler.add(_task(hangs, timeout=0.05))
    try:
        async with scheduler:
            with anyio.fail_after(_WAIT):
                timed_out = await (await scheduler.trigger("hangs")).wait()
                again = await scheduler.submit(lambda: "the slot is free again")
                record = await again.wait()
    finally:
        release.set()
    assert timed_out.status is RunStatus.FAILED and not finished.is_set()
    assert timed_out.error is not None and timed_out.error.type == "RunTimeoutError"
    assert record.status is RunStatus.SUCCEEDED
    assert record.result == "the slot is free again"
    assert finished.wait(_WAIT)
