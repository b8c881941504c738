"""The event bus: who hears about runs, task states and alerts, and run handles.

Everything the runtime publishes (after the store has it) comes through
:meth:`EventBus.publish`: it resolves the :class:`RunHandle` of a run that ended, tells
the plugins' ``xtasks_run_finished`` hooks, then calls the subscribers, each filtered
by event type. It lives apart from the Scheduler so the path of an event is one file.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio

from ._errors import ConfigError, StoreError, XtasksError
from ._events import Alert, RunChanged, TaskStateChanged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from pluggy import HookRelay

    from ._events import Event
    from ._runs import RunRecord
    from ._service import Spawner

__all__ = ["OBSERVER_TIMEOUT", "EventBus", "Observable", "RunHandle"]

_log = logging.getLogger("xtasks")

#: Seconds a plugin's awaitable from ``xtasks_run_finished`` may take.
OBSERVER_TIMEOUT = 10.0

E = TypeVar("E", bound="Event")
_EVENT_TYPES = (RunChanged, TaskStateChanged, Alert)


@final
class RunHandle:
    """A requested run: its ``id`` now, its final :class:`RunRecord` via :meth:`wait`."""

    __slots__ = ("_cancel", "_done", "_ended", "_lost", "_record", "id")

    def __init__(self, run_id: str, cancel: Callable[[str], bool] | None = None) -> None:
        self.id = run_id
        # Made only when someone waits for a run not ended yet: most handles of a burst
        # are waited for after their run ended, or never.
        self._done: anyio.Event | None = None
        self._ended = False
        self._record: RunRecord | None = None
        self._lost: XtasksError | None = None
        self._cancel = cancel

    @property
    def record(self) -> RunRecord | None:
        """The final record, or ``None`` while the run is not finished."""
        return self._record

    async def wait(self) -> RunRecord:
        """Wait until the run is final (stored and published) and return its record.

        :raises StoreError: the scheduler stopped while the store could not take the
            run's final record (it was never stored, so it is not reported final).
        """
        if not self._ended:  # an ended run returns at once, as a done future does
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._lost is not None:
            raise self._lost
        assert self._record is not None
        return self._record

    def _abandon(self, error: XtasksError) -> None:
        self._lost = error
        self._end()

    def _end(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done.set()

    def cancel(self) -> bool:
        """Cancel this run only: the task keeps its state and its other runs.

        A run not started yet ends ``cancelled`` at once; a running ``async`` run is
        cancelled where it awaits (a ``sync`` call cannot be interrupted: it is recorded
        cancelled and its thread finishes in the background). Cancelling is not a
        failure: no retry, no alert. :meth:`wait` returns the ``cancelled`` record
        (reason ``"cancelled by its handle"``).

        :return: ``False``, doing nothing, when the run has already ended.
        """
        if self._record is not None or self._cancel is None:
            return False
        return self._cancel(self.id)

    def _resolve(self, record: RunRecord) -> None:
        self._record = record
        self._cancel = None
        self._end()

    def __repr__(self) -> str:
        state = self._record.status.value if self._record else "pending"
        return f"<RunHandle {self.id} {state}>"


def _check_types(types: object) -> tuple[type[Event], ...] | None:
    """``types=`` as a tuple for ``isinstance``, refusing what no event could match."""
    if types is None:
        return None
    wanted = types if isinstance(types, tuple) else (types,)
    known = ", ".join(t.__name__ for t in _EVENT_TYPES)
    for kind in wanted or (None,):  # an empty tuple would match nothing, silently
        if kind not in _EVENT_TYPES:
            raise ConfigError(
                f"types={types!r}: {kind!r} is not an event type; use one of {known}, "
                "a tuple of them, or None for every event",
                field="types",
            )
    return wanted


@final
class EventBus:
    """Publishes events to subscribers and streams, and resolves run handles.

    :param hooks: the plugin manager's hooks; ``xtasks_run_finished`` is called once
        per final record, when a plugin implements it.
    :param cancel: cancels one live run by id (what :meth:`RunHandle.cancel` calls).
    """

    def __init__(self, hooks: HookRelay, cancel: Callable[[str], bool]) -> None:
        self._hooks = hooks
        self._cancel = cancel
        self._handles: dict[str, RunHandle] = {}
        self._subscribers: list[tuple[Callable[[Any], object], tuple[type[Event], ...] | None]] = []
        self._streams: set[MemoryObjectSendStream[Any]] = set()
        self._observe = False
        self._tg: Spawner | None = None

    def start(self, tg: Spawner) -> None:
        """Run plugins' awaitables in ``tg`` from now on (the scheduler's task group)."""
        self._tg = tg
        self._observe = bool(self._hooks.xtasks_run_finished.get_hookimpls())

    def stop(self) -> None:
        """End every open :meth:`events` stream; subscribers stay for the next start.

        A handle still waiting belongs to a run whose final record the store never took
        (the scheduler stopped while it failed): its :meth:`RunHandle.wait` raises."""
        self._tg = None
        for send in list(self._streams):
            send.close()
        handles, self._handles = self._handles, {}
        for run_id, handle in handles.items():
            handle._abandon(
                StoreError(
                    f"run {run_id}: the scheduler stopped before the store took its final "
                    "record; see the log for the store error"
                )
            )

    def track(self, run_id: str) -> RunHandle:
        """A handle resolved when the run's final record is published."""
        handle = self._handles[run_id] = RunHandle(run_id, self._cancel)
        return handle

    def subscribe(
        self, callback: Callable[[Any], object], types: object = None
    ) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of ``types``; return an unsubscriber.

        ``types``: one event type, a tuple of them, or ``None`` for every event.
        """
        return self._add(callback, _check_types(types))

    def _add(
        self, callback: Callable[[Any], object], types: tuple[type[Event], ...] | None
    ) -> Callable[[], None]:
        entry = (callback, types)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    @asynccontextmanager
    async def events(
        self, max_buffer: int, types: object = None
    ) -> AsyncIterator[MemoryObjectReceiveStream[Any]]:
        """A stream of the events of ``types``, dropping the newest when it is full."""
        checked = _check_types(types)  # before anything needs closing
        send, receive = anyio.create_memory_object_stream[Any](max_buffer)
        self._streams.add(send)
        dropped = 0

        def forward(event: Event) -> None:
            nonlocal dropped
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                dropped += 1
                if dropped == 1:
                    _log.warning("an event consumer fell %d events behind; dropping", max_buffer)
            except anyio.ClosedResourceError:
                pass

        unsubscribe = self._add(forward, checked)
        try:
            async with receive:
                yield receive
        finally:
            unsubscribe()
            self._streams.discard(send)
            send.close()

    def publish(self, event: Event) -> None:
        """Hand ``event`` (already stored) to handles, plugins and subscribers."""
        if type(event) is RunChanged and event.record.status.is_final:
            handle = self._handles.pop(event.record.id, None)
            if handle is not None:
                handle._resolve(event.record)
            if self._observe:
                self._notify_plugins(event.record)
        for callback, types in self._subscribers:
            if types is not None and not isinstance(event, types):
                continue
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug never stops scheduling
                _log.exception("event subscriber %r failed", callback)

    def _notify_plugins(self, record: RunRecord) -> None:
        try:
            results = self._hooks.xtasks_run_finished(record=record)
        except Exception:  # noqa: BLE001 - a plugin's bug never stops scheduling
            _log.exception("a plugin's xtasks_run_finished failed")
            return
        for result in results:
            if inspect.isawaitable(result) and self._tg is not None:
                self._tg.start_soon(_await_observer, result)


async def _await_observer(awaitable: Awaitable[object]) -> None:
    try:
        with anyio.fail_after(OBSERVER_TIMEOUT):
            await awaitable
    except Exception:  # noqa: BLE001 - isolated: logged, never propagated
        _log.exception("a plugin's xtasks_run_finished awaitable failed")


class Observable:
    """The event side of :class:`~xtasks.Scheduler`: ``subscribe`` and ``events``.

    Typed so that ``types=RunChanged`` hands the callback (or the stream) a
    ``RunChanged``; a tuple of types hands it their union.
    """

    _bus: EventBus

    @overload
    def subscribe(
        self, callback: Callable[[Event], object], types: None = None
    ) -> Callable[[], None]: ...
    @overload
    def subscribe(
        self, callback: Callable[[E], object], types: type[E] | tuple[type[E], ...]
    ) -> Callable[[], None]: ...
    def subscribe(self, callback: Callable[[Any], object], types: Any = None) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; return a function that unsubscribes.

        ``types`` keeps only these: ``RunChanged``, ``TaskStateChanged``, ``Alert``, or
        a tuple of them (default: every event). Called on the event loop right after the
        change is stored: it must be quick and must not block; its exceptions are
        logged and otherwise ignored.

        :raises ConfigError: ``types`` holds something that is not an event type.
        """
        return self._bus.subscribe(callback, types)

    @overload
    def events(
        self, max_buffer: int = 1000, types: None = None
    ) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[Event]]: ...
    @overload
    def events(
        self, max_buffer: int = 1000, *, types: type[E] | tuple[type[E], ...]
    ) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[E]]: ...
    def events(
        self, max_buffer: int = 1000, types: Any = None
    ) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[Any]]:
        """Stream events to an ``async for``; it ends when the scheduler stops.

        ``types`` filters as for :meth:`subscribe`. A consumer that falls more than
        ``max_buffer`` events behind loses the newest ones (logged): the scheduler never
        waits for a consumer.
        """
        return self._bus.events(max_buffer, types)
