"""Run one call the way its task's mode says: on the loop, in a thread, or in a process.

The only bridge from async to blocking code in the core.
"""

from __future__ import annotations

import functools
import pickle
import traceback
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.to_process
import anyio.to_thread

from ._runs import WORKER_TRACEBACK
from ._task import Mode

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._task import Task

__all__ = ["Executors"]


@final
class Executors:
    """Holds the limiters for blocking work, sized like the planner's slots.

    The planner already never starts more ``sync`` or ``process`` runs than there are
    slots, so the limiters never make a run wait; they only size anyio's pools.
    """

    __slots__ = ("process_limiter", "thread_limiter")

    def __init__(self, *, thread_slots: int, process_slots: int) -> None:
        self.thread_limiter = anyio.CapacityLimiter(thread_slots)
        self.process_limiter = anyio.CapacityLimiter(process_slots)

    async def call(self, task: Task, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Call ``task.func(*args, **kwargs)`` and return its result.

        A ``sync`` call abandoned by cancellation (timeout, cancel, shutdown) keeps running
        in its thread until it returns: Python cannot interrupt a thread.
        """
        func = task.func
        mode = task.mode
        if mode is Mode.ASYNC:
            return await func(*args, **kwargs)
        call: Callable[[], Any] = (
            functools.partial(func, *args, **kwargs)
            if kwargs
            else (functools.partial(func, *args) if args else func)
        )
        if mode is Mode.SYNC:
            return await anyio.to_thread.run_sync(
                call, abandon_on_cancel=True, limiter=self.thread_limiter
            )
        try:
            return await anyio.to_process.run_sync(
                functools.partial(_in_worker_process, call),
                cancellable=True,
                limiter=self.process_limiter,
            )
        except _RaisedInWorker as raised:
            raise raised.original() from None


class _RaisedInWorker(Exception):
    """A ``BaseException`` that is not an ``Exception`` (``SystemExit``, ...), carried back
    from a worker process inside an ``Exception``: raised as such there, it would end the
    worker (and fail the next task that uses it) instead of failing this run."""

    def __init__(self, pickled: bytes | None, type_name: str, message: str, note: str) -> None:
        super().__init__(pickled, type_name, message, note)
        self.pickled, self.type_name, self.message, self.note = pickled, type_name, message, note

    def original(self) -> BaseException:
        """The exception the task raised, rebuilt here (a ``RuntimeError`` naming it when
        it cannot be)."""
        found: object = None
        try:  # pickled by our own worker process, from the task's own exception
            found = pickle.loads(self.pickled) if self.pickled is not None else None
        except Exception:  # noqa: BLE001 - its class may not import here: say what it was
            found = None
        exc = found if isinstance(found, BaseException) else None
        if exc is None:
            exc = RuntimeError(f"{self.type_name}: {self.message}")
        exc.add_note(self.note)
        return exc


def _in_worker_process(call: Callable[[], Any]) -> Any:
    """Runs in the worker process: an exception crossing back to the scheduler loses its
    traceback (only the exception is pickled), so it is written into a note first."""
    try:
        return call()
    except BaseException as exc:
        frames = traceback.format_tb(exc.__traceback__.tb_next if exc.__traceback__ else None)
        note = f"{WORKER_TRACEBACK}\n{''.join(frames).rstrip()}"
        if not isinstance(exc, Exception):
            try:
                pickled: bytes | None = pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - then its type and message will do
                pickled = None
            raise _RaisedInWorker(pickled, type(exc).__qualname__, str(exc), note) from None
        exc.add_note(note)
        raise
