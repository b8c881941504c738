"""Run one call the way its task's mode says: on the loop, in a thread, or in a process.

The only bridge from async to blocking code in the core.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the asyncio backend's own thread pool, see _ThreadPool
import contextvars
import functools
import pickle
import threading
import traceback
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, TypeAlias, final

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
    """Holds the pools for blocking work, sized like the planner's slots.

    The planner already never starts more ``sync`` or ``process`` runs than there are
    slots, so the limiters never make a run wait; they only size anyio's pools. On
    asyncio, sync calls go to a :class:`_ThreadPool` instead (open from the first sync
    call to :meth:`close`); on trio, to ``anyio.to_thread``.
    """

    __slots__ = ("_threads", "process_limiter", "thread_limiter")

    def __init__(self, *, thread_slots: int, process_slots: int) -> None:
        self.thread_limiter = anyio.CapacityLimiter(thread_slots)
        self.process_limiter = anyio.CapacityLimiter(process_slots)
        self._threads: _ThreadPool | None = None

    def close(self) -> None:
        """End the idle threads (as the scheduler stops); a call still going in a thread,
        abandoned by cancellation, ends its thread when it returns."""
        if self._threads is not None:
            self._threads.close()
            self._threads = None

    def _open_threads(self, loop: asyncio.AbstractEventLoop) -> _ThreadPool:
        """The pool for sync calls on ``loop`` (a pool left open on another one closed)."""
        self.close()
        self._threads = _ThreadPool(loop, self.thread_limiter.total_tokens)
        return self._threads

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
            loop = asyncio._get_running_loop()  # None on trio
            if loop is None:
                return await anyio.to_thread.run_sync(
                    call, abandon_on_cancel=True, limiter=self.thread_limiter
                )
            threads = self._threads
            if threads is None or threads.loop is not loop:
                threads = self._open_threads(loop)
            return await threads.run(call)
        try:
            return await anyio.to_process.run_sync(
                functools.partial(_in_worker_process, call),
                cancellable=True,
                limiter=self.process_limiter,
            )
        except _RaisedInWorker as raised:
            raise raised.original() from None


#: A call for a thread: the caller's context, the call, the future for its outcome.
_Item: TypeAlias = "tuple[contextvars.Context, Callable[[], Any], asyncio.Future[_Outcome]]"
#: How a call ended: ``(True, result)`` or ``(False, exception)``. A future cannot hold a
#: ``StopIteration`` as its exception; raised in :meth:`_ThreadPool.run` it becomes a
#: ``RuntimeError``, as it would from ``anyio.to_thread``.
_Outcome: TypeAlias = "tuple[bool, Any]"


@final
class _ThreadPool:
    """The threads for sync calls on one asyncio loop: about twice as cheap per call as
    ``run_in_executor`` on a ``ThreadPoolExecutor`` and four times as ``anyio.to_thread``
    (no limiter, cancel scope or checkpoint per call: the planner bounds the sync runs).

    One queue of calls; an idle thread takes the next. Outcomes come back in a deque,
    collected on the loop: one wake-up of the loop for all that arrive meanwhile. Only
    the loop counts idle threads. A call abandoned by cancellation keeps its thread until
    it returns, so a new thread starts when none is idle; a thread that comes back with
    ``max_idle`` already idle ends. Threads are daemons: an abandoned call never holds
    up the exit of the process.
    """

    __slots__ = (
        "_calls",
        "_closed",
        "_collecting",
        "_idle",
        "_max_idle",
        "_outcomes",
        "_threads",
        "loop",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_idle: float) -> None:
        self.loop = loop
        self._max_idle = max_idle
        self._calls: SimpleQueue[_Item | None] = SimpleQueue()
        self._outcomes: deque[tuple[asyncio.Future[_Outcome], _Outcome]] = deque()
        self._collecting = False  # a call to _collect is on its way to the loop
        self._idle = 0
        self._threads = 0
        self._closed = False

    async def run(self, call: Callable[[], Any]) -> Any:
        """Call ``call()`` in a thread, in a copy of this context; return or raise its
        outcome. Cancelled, it returns at once and the call goes on in its thread (or, not
        started yet, never starts)."""
        future: asyncio.Future[_Outcome] = self.loop.create_future()
        if self._idle:
            self._idle -= 1
        else:
            self._threads += 1
            threading.Thread(target=self._work, name="xtasks-sync", daemon=True).start()
        self._calls.put((contextvars.copy_context(), call, future))
        ok, value = await future
        if ok:
            return value
        try:
            raise value
        finally:
            del value  # no cycle: the traceback holds this frame

    def close(self) -> None:
        """One stop per thread: the idle ones end now, the busy ones when they return."""
        self._closed = True
        for _ in range(self._threads):
            self._calls.put(None)

    def _collect(self) -> None:
        """On the loop: hand each outcome to its caller; each thread back stays idle, or
        ends if enough are. Cleared first, so an outcome added meanwhile calls again."""
        self._collecting = False
        outcomes = self._outcomes
        while outcomes:
            future, outcome = outcomes.popleft()
            if self._idle < self._max_idle or self._closed:  # closed: none counted now
                self._idle += 1
            else:
                self._threads -= 1
                self._calls.put(None)
            if not future.cancelled():
                future.set_result(outcome)

    def _work(self) -> None:
        """A thread: take calls until told to stop or the loop is closed."""
        with _anyio_worker_thread(self.loop):
            self._take_calls()

    def _take_calls(self) -> None:
        """Each call's outcome goes to the deque; the loop is woken once per batch."""
        calls, outcomes = self._calls, self._outcomes
        while (item := calls.get()) is not None:
            context, call, future = item
            outcome: _Outcome = (True, None)
            if not future.cancelled():  # cancelled before it started: not started at all
                try:
                    outcome = (True, context.run(call))
                except BaseException as exc:  # noqa: BLE001 - the task's own: its outcome
                    outcome = (False, exc)
            outcomes.append((future, outcome))
            del item, context, call, future, outcome
            if not self._collecting:
                self._collecting = True
                try:
                    self.loop.call_soon_threadsafe(self._collect)
                except RuntimeError:  # the loop is closed: no one to answer to
                    return


def _anyio_worker_thread(loop: asyncio.AbstractEventLoop) -> AbstractContextManager[object]:
    """Makes this thread one where ``anyio.from_thread.run`` reaches ``loop``, as in
    anyio's own threads. anyio has no public way to do it: should its private one go,
    sync calls lose ``from_thread`` without a token, and nothing else."""
    try:
        from anyio._backends._asyncio import backend_class
        from anyio._core._eventloop import claim_worker_thread

        return claim_worker_thread(backend_class, loop)
    except (ImportError, TypeError):
        return nullcontext()


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
