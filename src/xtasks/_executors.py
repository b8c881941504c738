"""The executors: where an attempt's body runs. The built-ins run it on the loop
(``async``), in a thread (``sync``) or in a worker process (``process``); plugins add
others behind :class:`xtasks.abc.Executor`.

The only bridge from async to blocking code in the core.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the asyncio backend's own thread pool, see _ThreadPool
import contextvars
import functools
import logging
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

from ._errors import ConfigError
from ._task_func import RemoteFunction
from .abc import Executor, with_worker_traceback

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._decisions import StartAttempt as Attempt
    from ._service import Spawner
    from ._task import Task

__all__ = ["AsyncExecutor", "Executors", "ProcessExecutor", "ThreadExecutor"]

_log = logging.getLogger("xtasks")

#: Where an executor came from, for error messages.
BUILTIN = "xtasks (built-in)"


def _bound(attempt: Attempt) -> Callable[[], Any]:
    """The attempt's call with no arguments (no partial when there are none)."""
    func, args, kwargs = attempt.task.func, attempt.args, attempt.kwargs
    if kwargs:
        return functools.partial(func, *args, **kwargs)
    return functools.partial(func, *args) if args else func


@final
class AsyncExecutor(Executor):
    """``async``: awaits the coroutine function on the scheduler's loop."""

    name = "async"
    slots = None
    interrupts = True

    async def run(self, attempt: Attempt) -> Any:
        return await attempt.task.func(*attempt.args, **attempt.kwargs)


@final
class ThreadExecutor(Executor):
    """``sync``: calls the function in a thread. On asyncio, a :class:`_ThreadPool` (open
    from the first call to :meth:`close`); on trio, ``anyio.to_thread``.

    A call abandoned by cancellation (timeout, cancel, shutdown) keeps running in its
    thread until it returns: Python cannot interrupt a thread.
    """

    name = "sync"
    interrupts = False

    def __init__(self, slots: int = 40) -> None:
        self.slots = slots
        self.limiter = anyio.CapacityLimiter(slots)
        self._threads: _ThreadPool | None = None

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """End the idle threads; a call still going ends its thread when it returns."""
        if self._threads is not None:
            self._threads.close()
            self._threads = None

    async def run(self, attempt: Attempt) -> Any:
        call = _bound(attempt)
        loop = asyncio._get_running_loop()  # None on trio
        if loop is None:
            return await anyio.to_thread.run_sync(
                call, abandon_on_cancel=True, limiter=self.limiter
            )
        threads = self._threads
        if threads is None or threads.loop is not loop:
            self.close_now()  # a pool left open on another loop
            threads = self._threads = _ThreadPool(loop, self.limiter.total_tokens)
        return await threads.run(call)


@final
class ProcessExecutor(Executor):
    """``process``: calls the function in a worker process (anyio's pool); the task's
    traceback comes back in a note of its exception."""

    name = "process"
    interrupts = True

    def __init__(self, slots: int = 4) -> None:
        self.slots = slots
        self.limiter = anyio.CapacityLimiter(slots)

    async def run(self, attempt: Attempt) -> Any:
        try:
            return await anyio.to_process.run_sync(
                functools.partial(_in_worker_process, _bound(attempt)),
                cancellable=True,
                limiter=self.limiter,
            )
        except _RaisedInWorker as raised:
            raise raised.original() from None


@final
class Executors:
    """A scheduler's executors by name: the built-ins and those registered.

    The planner never starts more runs on an executor than its ``slots``, so the
    built-ins' limiters never make a run wait; they only size the pools.
    """

    __slots__ = ("by_name", "origins")

    def __init__(self, *, thread_slots: int, process_slots: int) -> None:
        self.by_name: dict[str, Executor] = {}
        self.origins: dict[str, str] = {}
        for builtin in (
            AsyncExecutor(),
            ThreadExecutor(thread_slots),
            ProcessExecutor(process_slots),
        ):
            self.add(builtin, BUILTIN)

    def add(self, executor: Executor, origin: str) -> None:
        """Register ``executor`` (from ``origin``, for messages).

        :raises ConfigError: it is not an executor, or its name is taken.
        """
        if not isinstance(executor, Executor):
            msg = f"{origin} gave {executor!r} as an executor; it must be an xtasks.abc.Executor"
            raise ConfigError(msg, field="executors")
        name = getattr(executor, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{origin}: executor {executor!r} has no name", field="executors")
        if name in self.by_name:
            raise ConfigError(
                f"two executors are named {name!r}: one from {self.origins[name]}, "
                f"one from {origin}",
                field="executors",
            )
        self.by_name[name] = executor
        self.origins[name] = origin

    def check(self, task: Task) -> None:
        """Refuse ``task`` if its executor is unknown, or needs an importable target
        that the task does not have.

        :raises ConfigError: naming the task and the installed executors.
        """
        executor = self.by_name.get(task.runs_on)
        if executor is None:
            names = ", ".join(sorted(self.by_name))
            raise ConfigError(
                f"task {task.name!r} asks for executor {task.runs_on!r}, which is not "
                f"installed (installed: {names})",
                field="executor",
            )
        remote = isinstance(task.func, RemoteFunction)
        if executor.needs_target and not (remote or _importable(task)):
            raise ConfigError(
                f"task {task.name!r} runs on executor {task.runs_on!r}, whose workers find "
                f"its function by name; give func as that name, a string (got "
                f"{task.target!r}, which does not import as that function)",
                field="executor",
            )
        if remote and not executor.needs_target:
            assert isinstance(task.func, RemoteFunction)
            raise ConfigError(
                f"task {task.name!r} runs on executor {task.runs_on!r}, which calls its "
                f"function in this process, but func {task.target!r} was not imported "
                f"({task.func.reason}); give it as 'package.module:function'",
                field="func",
            )
        executor.check(task)

    async def call(self, task: Task, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run ``task.func(*args, **kwargs)`` on the task's executor, outside any run (a
        direct call: tests, tools). The runtime calls ``executor.run`` itself."""
        from ._decisions import StartAttempt

        attempt = StartAttempt("", task, args, kwargs, 1)
        return await self.by_name[task.runs_on].run(attempt)

    async def open(self, executors: Iterable[Executor]) -> list[Executor]:
        """Open ``executors`` in turn; return those opened (to close later). One failing:
        those opened are closed and its error goes on."""
        opened: list[Executor] = []
        try:
            for executor in executors:
                await executor.open()
                opened.append(executor)
        except BaseException:
            await self.close(opened)
            raise
        return opened

    async def close(self, executors: Iterable[Executor] = ()) -> None:
        """Close the executors given, and always the built-in thread pool."""
        for executor in executors:
            try:
                await executor.close()
            except Exception:  # noqa: BLE001 - one failing close must not skip the others
                _log.exception("closing executor %r failed", executor.name)
        self.close_now()

    def start_serving(self, tg: Spawner) -> None:
        """Start the background loop of each executor that has one (:meth:`Executor.serve`)
        in ``tg``, the scheduler's own tasks: they end after the last run."""
        for executor in self.by_name.values():
            if type(executor).serve is not Executor.serve:
                tg.start_soon(_serve, executor, name=f"xtasks executor {executor.name}")

    def close_now(self) -> None:
        """End the built-in pool's idle threads (as the scheduler stops)."""
        threads = self.by_name.get("sync")
        if isinstance(threads, ThreadExecutor):
            threads.close_now()


async def _serve(executor: Executor) -> None:
    """Run ``executor.serve()``; should it raise, log it and start it again a second later
    (its runs wait on it: it must not stay down, nor stop the scheduler)."""
    while True:
        try:
            await executor.serve()
        except Exception:  # noqa: BLE001 - any failure: logged, then started again
            _log.exception(
                "executor %r: its background loop failed; starting it again in 1 s", executor.name
            )
        else:
            return
        await anyio.sleep(1)


def _importable(task: Task) -> bool:
    """Whether ``task.target`` imports as ``task.func`` (what a remote worker does)."""
    module, _, attr = task.target.partition(":")
    if not module or not attr:
        return False
    try:
        import importlib

        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - not importable, whatever the reason
        return False
    return found is task.func


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

    def __init__(self, pickled: bytes | None, type_name: str, message: str, frames: str) -> None:
        super().__init__(pickled, type_name, message, frames)
        self.pickled, self.type_name, self.message = pickled, type_name, message
        self.frames = frames

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
        return with_worker_traceback(exc, self.frames)


def _in_worker_process(call: Callable[[], Any]) -> Any:
    """Runs in the worker process: an exception crossing back to the scheduler loses its
    traceback (only the exception is pickled), so it is written into a note first."""
    try:
        return call()
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        frames = "".join(traceback.format_tb(tb))
        if not isinstance(exc, Exception):
            try:
                pickled: bytes | None = pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - then its type and message will do
                pickled = None
            raise _RaisedInWorker(pickled, type(exc).__qualname__, str(exc), frames) from None
        with_worker_traceback(exc, frames)
        raise
