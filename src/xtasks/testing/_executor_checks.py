"""The executor contract: what every :class:`xtasks.abc.Executor` must do, as checks.

Each check takes a factory for a fresh executor (not opened) and whether it runs
coroutine functions (``asynchronous=True``, like the built-in ``async``) or plain ones.
The task bodies live at module level here, named by ``"module:function"`` strings, so an
executor that ``needs_target`` (a remote worker imports them) runs them too, provided the
worker can import ``xtasks`` and shares this machine's temporary directory (the bodies
meet through marker files: nothing else crosses a process boundary both ways).
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio

from .._decisions import StartAttempt
from .._task import Task

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..abc import Executor

__all__ = [
    "EXECUTOR_CHECKS",
    "ExecutorFactory",
    "check_executor",
    "check_executor_cancel",
    "check_executor_concurrency",
    "check_executor_error",
    "check_executor_result",
    "check_executor_shutdown",
    "check_executor_timeout",
]

#: Makes a fresh executor, not opened.
ExecutorFactory: TypeAlias = "Callable[[], Executor]"
#: Generous bounds for a loaded machine; a correct executor is far below them.
_PROMPT = 10.0
_BLOCK = 15.0  # seconds a blocked body would last if nothing stopped it
_MODULE = __name__


# --- the task bodies (module level: importable by name) ---------------------------------


def echo(value: Any) -> dict[str, Any]:
    """Return the value, wrapped: the result crosses back as data."""
    return {"echo": value}


async def echo_async(value: Any) -> dict[str, Any]:
    """:func:`echo` for executors of coroutine functions."""
    return {"echo": value}


def _fail_deeper(message: str) -> None:
    raise ValueError(message)


def fail(message: str) -> None:
    """Raise ``ValueError(message)`` from a nested frame the traceback must show."""
    _fail_deeper(message)


async def fail_async(message: str) -> None:
    """:func:`fail` for executors of coroutine functions."""
    _fail_deeper(message)


def block(marker: str, seconds: float, others: int = 0) -> bool:
    """Write ``marker``, wait until ``others`` more markers sit beside it (a barrier;
    ``True`` once met), then block for ``seconds`` unless ``seconds`` is 0."""
    met = _arrive(marker, others)
    if seconds:
        time.sleep(seconds)  # noqa: TID251 - a blocking body: it runs in a thread or worker
    return met


async def block_async(marker: str, seconds: float, others: int = 0) -> bool:
    """:func:`block` for executors of coroutine functions."""
    path = Path(marker)
    path.write_text(str(os.getpid()))  # noqa: ASYNC240 - a tiny local file, once
    deadline = time.monotonic() + _PROMPT
    met = others == 0
    while not met and time.monotonic() < deadline:
        met = len(list(path.parent.glob("*.marker"))) > others
        if not met:
            await anyio.sleep(0.01)  # polling a condition, with a deadline
    if seconds:
        await anyio.sleep(seconds)
    return met


def _arrive(marker: str, others: int) -> bool:
    path = Path(marker)
    path.write_text(str(os.getpid()))
    deadline = time.monotonic() + _PROMPT
    while time.monotonic() < deadline:
        if len(list(path.parent.glob("*.marker"))) > others:
            return True
        time.sleep(0.01)  # noqa: TID251 - polls a condition in a thread or worker, bounded
    return others == 0


# --- helpers -----------------------------------------------------------------------------


def _attempt(executor: Executor, body: str, asynchronous: bool, *args: Any) -> StartAttempt:
    name = body + ("_async" if asynchronous else "")
    task = Task(f"contract_{name}", f"{_MODULE}:{name}", args=args, executor=executor.name)
    return StartAttempt(f"contract-{name}-{time.monotonic_ns()}", task, task.args, {}, 1)


async def _wait_for(path: Path, count: int = 1) -> None:
    """Return once ``count`` markers are in ``path`` (polled; bounded by the caller)."""
    # Files are what crosses to a worker process or host: polled, bounded by the caller.
    while len(list(path.glob("*.marker"))) < count:  # noqa: ASYNC110, ASYNC240
        await anyio.sleep(0.01)


async def _opened(
    factory: Callable[[], Executor], check: Callable[[Executor], Awaitable[None]]
) -> None:
    executor = factory()
    await executor.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.serve)  # as the scheduler does: from open to the last run
            await check(executor)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_PROMPT):
            await executor.close()


# --- the checks --------------------------------------------------------------------------


async def check_executor_result(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """``run`` returns what the body returned."""

    async def check(executor: Executor) -> None:
        with anyio.fail_after(_PROMPT):
            result = await executor.run(_attempt(executor, "echo", asynchronous, [1, "two"]))
        assert result == {"echo": [1, "two"]}, f"{executor.name}: run returned {result!r}"

    await _opened(factory, check)


async def check_executor_error(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """``run`` raises the body's exception, its type and message kept, and its traceback
    (or a note carrying it) shows the frame that raised."""

    async def check(executor: Executor) -> None:
        try:
            with anyio.fail_after(_PROMPT):
                await executor.run(_attempt(executor, "fail", asynchronous, "boom 42"))
        except ValueError as exc:
            text = "".join(traceback.format_exception(exc))
            assert "boom 42" in str(exc), f"{executor.name}: the message is lost: {exc!r}"
            assert "_fail_deeper" in text, f"{executor.name}: the traceback is lost:\n{text}"
        else:
            raise AssertionError(f"{executor.name}: run returned instead of raising")

    await _opened(factory, check)


async def check_executor_timeout(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """A deadline around ``run`` (how the runtime times an attempt out) ends it promptly."""

    async def check(executor: Executor) -> None:
        with tempfile.TemporaryDirectory() as folder:
            marker = str(Path(folder) / "a.marker")
            began = time.monotonic()
            with anyio.move_on_after(0.2) as limit:
                await executor.run(_attempt(executor, "block", asynchronous, marker, _BLOCK))
            took = time.monotonic() - began
        assert limit.cancelled_caught, f"{executor.name}: the body was not timed out"
        assert took < _PROMPT, f"{executor.name}: a 0.2 s timeout took {took:.1f} s"

    await _opened(factory, check)


async def check_executor_cancel(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """Cancelling ``run`` once the body runs (a cancel from the manager) ends it promptly,
    with the cancellation itself, not a result."""

    async def check(executor: Executor) -> None:
        ended: list[str] = []
        with tempfile.TemporaryDirectory() as folder:
            marker = str(Path(folder) / "a.marker")

            async def one() -> None:
                try:
                    await executor.run(_attempt(executor, "block", asynchronous, marker, _BLOCK))
                    ended.append("returned")
                except anyio.get_cancelled_exc_class():
                    ended.append("cancelled")
                    raise

            with anyio.fail_after(_PROMPT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(one)
                    await _wait_for(Path(folder))
                    tg.cancel_scope.cancel()
        assert ended == ["cancelled"], f"{executor.name}: cancelled run ended as {ended}"

    await _opened(factory, check)


async def check_executor_concurrency(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """``slots`` attempts (4 at most, 4 when unbounded) run at the same time: each body
    waits until all of them have begun."""

    async def check(executor: Executor) -> None:
        count = min(executor.slots or 4, 4)
        met: list[bool] = []
        with tempfile.TemporaryDirectory() as folder:

            async def one(index: int) -> None:
                marker = str(Path(folder) / f"{index}.marker")
                attempt = _attempt(executor, "block", asynchronous, marker, 0, count - 1)
                met.append(await executor.run(attempt))

            with anyio.fail_after(_PROMPT * 2):
                async with anyio.create_task_group() as tg:
                    for index in range(count):
                        tg.start_soon(one, index)
        assert met == [True] * count, (
            f"{executor.name}: {count} attempts (its slots) did not run at once: {met}"
        )

    await _opened(factory, check)


async def check_executor_shutdown(
    factory: Callable[[], Executor], *, asynchronous: bool = False
) -> None:
    """Closing the executor while an attempt runs (and its ``serve`` loop)
    returns promptly, and so does the attempt once cancelled (the runtime cancels what
    is left at shutdown)."""
    executor = factory()
    await executor.open()
    with tempfile.TemporaryDirectory() as folder:
        marker = str(Path(folder) / "a.marker")
        with anyio.fail_after(_PROMPT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(executor.serve)
                tg.start_soon(
                    executor.run, _attempt(executor, "block", asynchronous, marker, _BLOCK)
                )
                await _wait_for(Path(folder))
                with anyio.CancelScope(shield=True):
                    await executor.close()
                tg.cancel_scope.cancel()
        with anyio.fail_after(_PROMPT):
            await executor.close()  # idempotent


#: Every check, in order: what :func:`check_executor` runs.
EXECUTOR_CHECKS = (
    check_executor_result,
    check_executor_error,
    check_executor_timeout,
    check_executor_cancel,
    check_executor_concurrency,
    check_executor_shutdown,
)


async def check_executor(factory: Callable[[], Executor], *, asynchronous: bool = False) -> None:
    """Run every check of :data:`EXECUTOR_CHECKS` against fresh executors from
    ``factory``; the first that fails raises ``AssertionError`` (or its own error).

    :param asynchronous: the executor runs coroutine functions (like ``async``).
    """
    for check in EXECUTOR_CHECKS:
        await check(factory, asynchronous=asynchronous)
