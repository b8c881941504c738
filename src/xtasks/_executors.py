"""Run one call the way its task's mode says: on the loop, in a thread, or in a process.

The only bridge from async to blocking code in the core.
"""

from __future__ import annotations

import functools
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
        return await anyio.to_process.run_sync(
            functools.partial(_in_worker_process, call),
            cancellable=True,
            limiter=self.process_limiter,
        )


def _in_worker_process(call: Callable[[], Any]) -> Any:
    """Runs in the worker process: an exception crossing back to the scheduler loses its
    traceback (only the exception is pickled), so it is written into a note first."""
    try:
        return call()
    except Exception as exc:
        frames = traceback.format_tb(exc.__traceback__.tb_next if exc.__traceback__ else None)
        exc.add_note(f"{WORKER_TRACEBACK}\n{''.join(frames).rstrip()}")
        raise
