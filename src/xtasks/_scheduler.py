"""Scheduler: the one object users hold. Registry, lifecycle and queries.

It wires a :class:`~xtasks._planner.Planner` (policy), a :class:`~xtasks._runtime.Runtime`
(execution), a store (memory), alerters and event subscribers, and owns the task group
they all live in. It does nothing until ``async with scheduler``.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, final

import anyio

from ._alert_delivery import AlertDelivery, Channel
from ._alerter import LoggingAlerter
from ._clock import SystemClock
from ._errors import (
    ConfigError,
    PluginError,
    SchedulerStateError,
    StoreError,
    TaskNotFoundError,
    TaskStateError,
    XtasksError,
)
from ._events import RunChanged
from ._executors import Executors
from ._planner import Planner
from ._runs import AuditRecord, RunRecord, TaskInfo, TaskRecord, TaskState
from ._runtime import Runtime
from ._setup import load_setup, raise_all
from ._task import Task
from .stores import open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
    from datetime import datetime
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._clock import Clock
    from ._config import Config
    from ._events import Event
    from ._plugins import PluginOrigin
    from ._runs import RunStatus
    from .abc import Alerter, Store

__all__ = ["RunHandle", "Scheduler", "SchedulerStats"]

_log = logging.getLogger("xtasks")
P = ParamSpec("P")
T = TypeVar("T")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")
_ADHOC_CACHE_SIZE = 512


@final
class RunHandle:
    """A requested run: its ``id`` now, its final :class:`RunRecord` via :meth:`wait`."""

    __slots__ = ("_done", "_record", "id")

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self._done = anyio.Event()
        self._record: RunRecord | None = None

    @property
    def record(self) -> RunRecord | None:
        """The final record, or ``None`` while the run is not finished."""
        return self._record

    async def wait(self) -> RunRecord:
        """Wait until the run is final (stored and published) and return its record."""
        await self._done.wait()
        assert self._record is not None
        return self._record

    def _resolve(self, record: RunRecord) -> None:
        self._record = record
        self._done.set()

    def __repr__(self) -> str:
        state = self._record.status.value if self._record else "pending"
        return f"<RunHandle {self.id} {state}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerStats:
    """How busy this scheduler is right now, as :meth:`Scheduler.stats` returns it.

    Read from memory: no store I/O, so it is cheap enough for every metrics scrape or
    health check. It describes this process only, not the other replicas.
    """

    #: Runs ready to start but waiting for a worker or for a concurrency slot (overall,
    #: thread pool or process pool). Runs waiting for their dependencies, for a retry
    #: delay or jitter, or behind a running run of their task (``overlap="queue"``) are
    #: not counted.
    queued: int
    running: int  #: attempts executing now
    #: Seconds by which the timer loop handled the latest due fire after its due time:
    #: event-loop congestion or a slow store shows here first. 0.0 before any fire.
    timer_lag: float
    #: Alert deliveries that raised or timed out since the scheduler started.
    alerts_failed: int = 0
    #: Alerts dropped since the scheduler started because a delivery queue was full.
    alerts_dropped: int = 0


#: ``Scheduler`` actions written to the audit trail, by method.
_AUDITED = frozenset({"run", "pause", "resume", "cancel"})


@final
class Scheduler:
    """Runs tasks on their triggers, on demand and as one-shot submissions.

    :param store: a store URL (``"memory://"``) or a :class:`xtasks.abc.Store` object.
    :param plugins: ``True`` discovers the ``xtasks`` entry points; ``False`` loads none;
        a list loads exactly those (plugin objects, or entry point / distribution names).
    :param config: the application's YAML file; it wins over the plugins' ``config.yaml``.
        ``XTASKS_CONFIG`` names it when this is ``None``.
    :param strict_plugins: refuse to build with a broken plugin or config (the default);
        when false, leave the broken parts out and list them in :attr:`problems`.
    :param alerters: alerters besides the logging one every scheduler has and those
        configured under ``alerts:``.
    :param max_concurrency: runs executing at once, all modes together.
    :param thread_slots: ``sync`` runs executing at once (the thread pool's size).
    :param process_slots: ``process`` runs executing at once (default: CPU count).
    :param shutdown_grace: seconds that leaving the scheduler waits for running runs
        before it cancels them.
    :param replica_id: this process's name in run records; host and pid by default.
    :param clock: where time comes from; :class:`xtasks.testing.FakeClock` in tests.
    """

    def __init__(
        self,
        store: str | Store = "memory://",
        *,
        plugins: bool | Iterable[object] = True,
        config: str | os.PathLike[str] | None = None,
        strict_plugins: bool = True,
        alerters: Iterable[Alerter] = (),
        max_concurrency: int = 100,
        thread_slots: int = 40,
        process_slots: int | None = None,
        shutdown_grace: float = 10.0,
        replica_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not shutdown_grace >= 0:
            raise ConfigError(
                f"shutdown_grace must be a number of seconds >= 0, got {shutdown_grace!r}",
                field="shutdown_grace",
            )
        for name, value in (("thread_slots", thread_slots), ("process_slots", process_slots)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}", field=name)
        self.clock: Clock = clock or SystemClock()
        self.replica_id = replica_id or f"{socket.gethostname()}:{os.getpid()}"
        self.shutdown_grace = shutdown_grace
        self.alerters: tuple[Alerter, ...] = (LoggingAlerter(), *alerters)
        #: Alerters given in code (and the logging one) get every task's alerts; those
        #: from ``alerts:`` may be selected per task with ``alert_channels``.
        self._channels = [Channel(alerter) for alerter in self.alerters]
        slots = process_slots or os.cpu_count() or 1
        self._planner = Planner(
            max_concurrency=max_concurrency,
            thread_slots=thread_slots,
            process_slots=slots,
            replica=self.replica_id,
        )
        self._executors = Executors(thread_slots=thread_slots, process_slots=slots)
        self._runtime: Runtime | None = None
        self._tg: TaskGroup | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._handles: dict[str, RunHandle] = {}
        self._subscribers: list[Callable[[Event], object]] = []
        self._streams: set[MemoryObjectSendStream[Event]] = set()
        self._adhoc: dict[Any, tuple[Task, inspect.Signature | None]] = {}
        self._observe = False
        self._disabled: set[str] = set()
        #: Tasks added while running whose stored state is being loaded, by name.
        self._loading: dict[str, anyio.Event] = {}
        #: Where each task came from, by name (tasks added by the application: absent).
        self.task_origins: dict[str, PluginOrigin] = {}
        setup = load_setup(plugins, config, strict=strict_plugins)
        #: Problems found while loading plugins and configuration (``strict_plugins=False``).
        self.problems: list[XtasksError] = setup.problems
        #: Plugins that were left out because they are broken.
        self.degraded: list[PluginOrigin] = setup.plugins.degraded
        self.plugins: list[PluginOrigin] = setup.plugins.plugins
        self.config: Config = setup.config
        self._hooks = setup.plugins.manager.hook
        for task, origin in setup.plugins.tasks:
            try:
                if self.add(task) is not None:
                    self.task_origins[task.name] = origin
            except XtasksError as exc:
                setup.fail(
                    PluginError(
                        str(exc),
                        distribution=origin.distribution,
                        entry_point=origin.entry_point or origin.name,
                    )
                )
        configured = setup.build_alerters()
        self._channels += configured
        self.alerters = (*self.alerters, *(channel.alerter for channel in configured))
        setup.raise_if_strict()
        # After the plugins: the URL's scheme may be one a plugin registered.
        stores = setup.plugins.stores
        self.store: Store = open_store(store, stores) if isinstance(store, str) else store
        self._observe = bool(self._hooks.xtasks_run_finished.get_hookimpls())
        self._hooks.xtasks_configure.call_historic(kwargs={"scheduler": self})

    # --- registry ---------------------------------------------------------------------

    def add(self, task: Task) -> Task | None:
        """Register ``task``; its trigger starts counting from now.

        The configuration's ``tasks:`` entry of the same name overrides its fields first;
        returns the task as registered, or ``None`` when configured ``enabled: false``.

        **While the scheduler runs**, the task is registered at once (it is in
        :attr:`tasks`), and the state the store keeps under its name is loaded in the
        background and applied as at start: paused or cancelled stays so, its last fire
        (fires missed since go through ``catch_up``), its failure streak, and the grid
        anchor of an ``Every`` without ``start`` (ours is stored if none is, then the one
        stored is used: first writer wins). Its trigger is armed only then, once. The
        calls that act on it by name (:meth:`trigger`, :meth:`pause`, :meth:`resume`,
        :meth:`cancel`, :meth:`describe`) wait for that load first, so they see the
        stored state; :meth:`states` reports it ``active`` until it is applied. If the
        store cannot be read, the error is logged and the task starts afresh.

        :raises DuplicateTaskError: the name is taken.
        :raises DependencyCycleError: its ``depends_on`` closes a cycle.
        :raises UnknownDependencyError: (only while running) a dependency is unknown;
            before start, tasks may be added in any order.
        """
        effective = self.config.apply(task)
        if effective is None:  # `enabled: false` in the configuration
            self._disabled.add(task.name)
            return None
        task = effective
        planner = self._planner
        runtime, tg = self._runtime, self._tg
        if runtime is None or tg is None:
            planner.add_task(task, self.clock.now())
            return task
        # Armed once its stored state is loaded.
        runtime.command(planner.add_task, task, self.clock.now(), arm=False)
        try:
            planner.validate()
        except Exception:
            runtime.command(planner.remove_task, task.name, self.clock.now())
            raise
        loaded = self._loading[task.name] = anyio.Event()
        tg.start_soon(self._load_added, task, loaded, name=f"xtasks load {task.name}")
        return task

    async def _load_added(self, task: Task, loaded: anyio.Event) -> None:
        """Load and apply the stored state of ``task``, added while running; arm it."""
        name = task.name
        try:
            try:
                records = await self._load_records([name])
            except Exception:  # noqa: BLE001 - the task runs all the same, from scratch
                _log.exception("could not load the stored state of task %r; it starts afresh", name)
                records = {}
            planner = self._planner
            if planner.tasks.get(name) is task:  # not removed (or replaced) meanwhile
                record = records.get(name) or planner.task_record(name)
                self._command(planner.restore, name, record, self.clock.now())
        finally:
            if self._loading.get(name) is loaded:
                del self._loading[name]
            loaded.set()

    async def _loaded(self, name: str, what: str) -> None:
        """Return once a task added while running has its stored state applied."""
        loaded = self._loading.get(name)
        if loaded is not None:
            await loaded.wait()
            self._require_running(what)  # it may have stopped meanwhile

    def remove(self, name: str) -> Task:
        """Unregister ``name``; its queued runs are cancelled, running ones finish.

        :raises TaskNotFoundError: no such task.
        :raises ConfigError: other tasks depend on it.
        """
        return self._command(self._planner.remove_task, name, self.clock.now())

    @property
    def tasks(self) -> Mapping[str, Task]:
        """Registered tasks by name (a live, read-only view)."""
        return self._planner.tasks

    def check(self) -> list[XtasksError]:
        """Every problem that would stop this scheduler, without raising: broken plugins
        and config files (with ``strict_plugins=False``), unknown dependencies, and
        ``tasks:`` entries naming no task. Empty means it can start."""
        problems: list[XtasksError] = list(self.problems)
        problems.extend(self._planner.unknown_dependencies())
        problems.extend(self.config.unknown_tasks([*self.tasks, *self._disabled]))
        problems.extend(self.config.unknown_alert_channels(self.tasks))
        return problems

    # --- running things ---------------------------------------------------------------

    async def trigger(self, name: str, *, by: str | None = None) -> RunHandle:
        """Run ``name`` now, after fresh runs of its dependencies; honours ``overlap``.

        :param by: who asks (free text, e.g. ``"manager-token@127.0.0.1"``): the action
            is then written to the audit trail, refused or not, with the run id as its
            ``detail`` (see :meth:`audit`). ``None`` writes nothing.
        :raises TaskNotFoundError: no such task.
        :raises TaskStateError: the task is paused or cancelled.
        :raises SchedulerStateError: the scheduler is not running.
        :raises StoreError: (only with ``by``) the run was accepted and goes ahead, but
            its audit record could not be written; the message names the run.
        """
        self._require_running("trigger")
        if self._loading:
            await self._loaded(name, "trigger")
        now = self.clock.now()
        if by is None:  # the hot path: no store write
            run = self._command(self._planner.request, name, now)
            return self._track(run.id)
        try:
            run = self._command(self._planner.request, name, now)
        except SchedulerStateError:
            raise
        except Exception as exc:
            await self._audit_refusal(by, "run", name, now, exc)
            raise
        handle = self._track(run.id)
        await self._write_audit(by, "run", name, now, "ok", run.id)
        return handle

    async def submit(
        self, func: Callable[..., Any] | Task, /, *args: Any, **kwargs: Any
    ) -> RunHandle:
        """Run ``func(*args, **kwargs)`` once, tracked in history like any run.

        ``func`` may be a :class:`Task` to give the run policies (retries, timeout,
        priority); its ``args`` and ``kwargs`` are replaced by the ones given here, if any.
        A plain callable runs with default policies under a name derived from it.

        :raises ConfigError: the arguments do not fit the callable's signature.
        :raises SchedulerStateError: the scheduler is not running.
        """
        self._require_running("submit")
        task = self._adhoc_task(func, args, kwargs)
        if isinstance(func, Task) and not args and not kwargs:
            args, kwargs = func.args, dict(func.kwargs)
        run = self._command(self._planner.submit, task, args, kwargs, self.clock.now())
        return self._track(run.id)

    async def pause(self, name: str, *, by: str | None = None) -> None:
        """Stop firing ``name`` (persisted); runs already going finish.

        :param by: who asks: the action is written to the audit trail (see
            :meth:`trigger`).
        :raises TaskNotFoundError: no such task.
        :raises SchedulerStateError: the scheduler is not running.
        """
        await self._control("pause", name, by)

    async def resume(self, name: str, *, by: str | None = None) -> None:
        """Fire ``name`` again from now on (persisted).

        :param by: who asks: the action is written to the audit trail (see
            :meth:`trigger`).
        :raises TaskNotFoundError: no such task.
        :raises SchedulerStateError: the scheduler is not running.
        """
        await self._control("resume", name, by)

    async def cancel(self, name: str, *, by: str | None = None) -> None:
        """Stop firing ``name``, cancel its queued runs and its running async run.

        The state ``cancelled`` is persisted; the task and its history stay visible, and
        :meth:`resume` re-activates it. A running ``sync`` call cannot be interrupted: it
        is recorded cancelled and its thread finishes in the background.

        :param by: who asks: the action is written to the audit trail (see
            :meth:`trigger`).
        :raises TaskNotFoundError: no such task.
        :raises SchedulerStateError: the scheduler is not running.
        """
        await self._control("cancel", name, by)

    async def _control(self, action: str, name: str, by: str | None) -> None:
        """Pause, resume or cancel ``name``, persist it, and audit it when ``by`` is given."""
        self._require_running(action)
        await self._loaded(name, action)
        planner = self._planner
        method = {"pause": planner.pause, "resume": planner.resume, "cancel": planner.cancel}
        now = self.clock.now()
        try:
            self._command(method[action], name, now)
        except SchedulerStateError:
            raise
        except Exception as exc:
            if by is not None:
                await self._audit_refusal(by, action, name, now, exc)
            raise
        await self._flush()
        if by is not None:
            await self._write_audit(by, action, name, now, "ok", None)

    # --- audit trail ------------------------------------------------------------------

    async def audit(
        self, limit: int = 50, *, offset: int = 0, task: str | None = None
    ) -> list[AuditRecord]:
        """Return the audit trail of manual actions, newest first.

        Only actions called with ``by=`` are in it (the manager API always passes it):
        :meth:`trigger` (action ``"run"``), :meth:`pause`, :meth:`resume` and
        :meth:`cancel`, each with its outcome: ``"ok"``, ``"refused"`` (unknown task,
        or a manual run of a paused or cancelled task) or ``"failed"`` (any other
        error). A refused action is recorded, then its exception is raised unchanged.

        **When the audit record cannot be written** (the store fails), the action
        stands: a run goes ahead, a pause is in force. The :class:`StoreError` is
        raised to the caller all the same, naming the action (and the run id), and
        logged. An operator who relies on the trail must learn that an entry is
        missing, so it is never swallowed; and the action cannot be undone cleanly
        once the planner took it. For a refused action, the refusal wins: its original
        exception is raised, and the store failure is logged.

        :param limit: at most this many records.
        :param offset: skip this many of the newest first (paging).
        :param task: only actions on this task.
        :raises SchedulerStateError: the scheduler is not running.
        """
        self._require_running("audit")
        return await self.store.list_audit(task=task, limit=limit, offset=offset)

    async def _write_audit(
        self, by: str, action: str, task: str, at: datetime, outcome: str, detail: str | None
    ) -> None:
        assert action in _AUDITED
        record = AuditRecord(
            at=at, actor=by, action=action, task=task, outcome=outcome, detail=detail
        )
        try:
            await self.store.add_audit(record)
        except StoreError as exc:
            what = f"run {detail} of task {task!r}" if action == "run" else f"{action} {task!r}"
            _log.error(
                "%s by %r was done, but its audit record could not be written: %s",
                what,
                by,
                exc,
            )
            raise StoreError(
                f"{what} was done, but its audit record could not be written: {exc}"
            ) from exc

    async def _audit_refusal(
        self, by: str, action: str, task: str, at: datetime, exc: Exception
    ) -> None:
        outcome = "refused" if isinstance(exc, (TaskNotFoundError, TaskStateError)) else "failed"
        record = AuditRecord(
            at=at, actor=by, action=action, task=task, outcome=outcome, detail=str(exc)
        )
        try:
            await self.store.add_audit(record)
        except StoreError:
            _log.exception(
                "%s %r by %r was %s; its audit record could not be written",
                action,
                task,
                by,
                outcome,
            )

    # --- queries ----------------------------------------------------------------------

    def stats(self) -> SchedulerStats:
        """Runs queued and running here, the timer loop's lag, failed alerts; no I/O, O(1).

        All zero while the scheduler is not running.
        """
        runtime = self._runtime
        if runtime is None:
            return SchedulerStats(queued=0, running=0, timer_lag=0.0)
        planner = self._planner
        running = runtime.executing
        # Dispatched to the workers but not picked up yet: waiting for a worker.
        dispatched = max(planner.running - running, 0)
        return SchedulerStats(
            queued=planner.ready_count + dispatched,
            running=running,
            timer_lag=runtime.timer_lag,
            alerts_failed=runtime.alerts.failed,
            alerts_dropped=runtime.alerts.dropped,
        )

    def states(self) -> dict[str, TaskState]:
        """Every registered task's state (active, paused, cancelled), by name.

        Read from memory: no store I/O, O(tasks), so it is cheap enough for every
        metrics scrape; :meth:`describe` gives one task's next fire and last run, at the
        cost of a store read. A task added while running reports ``active`` until its
        stored state is loaded (see :meth:`add`).

        :raises SchedulerStateError: the scheduler is not running (the stored states are
            loaded at start).
        """
        self._require_running("read the task states")
        return self._planner.states()

    async def describe(self, name: str) -> TaskInfo:
        """Return the task, its state, next fire, last run and consecutive failures."""
        self._require_running("describe")
        await self._loaded(name, "describe")
        planner = self._planner
        task = self.tasks.get(name)
        if task is None:
            raise TaskNotFoundError(name, sorted(self.tasks))
        last = await self.store.list_runs(task=name, limit=1)
        return TaskInfo(
            task=task,
            state=planner.state_of(name),
            next_fire=planner.next_fire_of(name),
            last_run=last[0] if last else None,
            consecutive_failures=planner.consecutive_failures_of(name),
        )

    async def history(
        self,
        name: str,
        limit: int = 50,
        *,
        offset: int = 0,
        statuses: Collection[RunStatus] | None = None,
    ) -> list[RunRecord]:
        """Return ``name``'s run records, newest first."""
        self._require_running("history")
        return await self.store.list_runs(task=name, statuses=statuses, limit=limit, offset=offset)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the latest record of the run ``run_id``, or ``None``."""
        self._require_running("get_run")
        live = self._planner.live_record(run_id)
        if live is not None:
            return live
        return await self.store.get_run(run_id)

    # --- events -----------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; return a function that unsubscribes.

        Called on the event loop right after the change is stored: it must be quick and
        must not block. Its exceptions are logged and otherwise ignored.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @asynccontextmanager
    async def events(
        self, max_buffer: int = 1000
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Stream events to an ``async for``; it ends when the scheduler stops.

        A consumer that falls more than ``max_buffer`` events behind loses the newest
        ones (logged); the scheduler never waits for a consumer.
        """
        send, receive = anyio.create_memory_object_stream["Event"](max_buffer)
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

        unsubscribe = self.subscribe(forward)
        try:
            async with receive:
                yield receive
        finally:
            unsubscribe()
            self._streams.discard(send)
            send.close()

    def _publish(self, event: Event) -> None:
        if type(event) is RunChanged and event.record.status.is_final:
            handle = self._handles.pop(event.record.id, None)
            if handle is not None:
                handle._resolve(event.record)
            if self._observe:
                self._notify_plugins(event.record)
        for callback in self._subscribers:
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

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Scheduler:
        if self._exit_stack is not None:
            raise SchedulerStateError("the scheduler is already running")
        self._planner.validate()
        unknown: list[XtasksError] = [
            *self.config.unknown_tasks([*self.tasks, *self._disabled]),
            *self.config.unknown_alert_channels(self.tasks),
        ]
        if unknown:
            raise_all(unknown)
        async with AsyncExitStack() as stack:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            now = self.clock.now()
            records = await self._load_records(list(self._planner.tasks))
            self._planner.start(now, records)  # each task armed once, from its stored state
            tg: TaskGroup = await stack.enter_async_context(anyio.create_task_group())
            self._tg = tg
            self._runtime = Runtime(
                self._planner,
                self.store,
                self.clock,
                self._executors,
                alerts=AlertDelivery(
                    self._channels, self.store, self.config.alert_channels_for, self._publish
                ),
                publish=self._publish,
                replica=self.replica_id,
            )
            self._runtime.start(tg)
            self._exit_stack = stack.pop_all()
        return self

    async def _load_records(self, names: list[str]) -> dict[str, TaskRecord]:
        """The stored state of ``names``, after settling their grid anchors.

        A task never started anywhere gets our registration time stored as its anchor;
        then whichever replica's anchor won is read back (first writer wins).
        """
        planner = self._planner
        records = await self.store.load_tasks(names)
        first = {
            name: planner.task_record(name)
            for name in names
            if name not in records or records[name].anchor is None
        }
        if first:
            await self.store.save_tasks(first)
            records.update(await self.store.load_tasks(list(first)))
        return records

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, runtime = self._exit_stack, self._runtime
        assert stack is not None and runtime is not None
        try:
            with anyio.CancelScope(shield=True):
                await runtime.stop(self.shutdown_grace)
                for send in list(self._streams):
                    send.close()
        finally:
            self._runtime = None
            self._exit_stack = None
            # Every run is recorded by now; what is left are idle loops.
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
                self._tg = None
            await stack.__aexit__(exc_type, exc, tb)
        return None

    async def serve(self) -> None:
        """Run until cancelled (Ctrl-C in ``anyio.run``, or a cancelled task group)."""
        async with self:
            await anyio.sleep_forever()

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """An ASGI lifespan: ``FastAPI(lifespan=scheduler.lifespan)``."""
        async with self:
            yield

    @property
    def running(self) -> bool:
        """Whether the scheduler is inside ``async with``."""
        return self._runtime is not None

    # --- internals --------------------------------------------------------------------

    def _require_running(self, what: str) -> None:
        if self._runtime is None:
            raise SchedulerStateError(
                f"cannot {what}: the scheduler is not running; "
                "start it with `async with scheduler:` (or scheduler.serve())"
            )

    def _command(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Apply a planner command: through the runtime while running (which carries out
        what it decides), directly before start (its decisions wait for the start)."""
        runtime = self._runtime
        if runtime is None:
            return fn(*args, **kwargs)
        return runtime.command(fn, *args, **kwargs)

    async def _flush(self) -> None:
        runtime = self._runtime
        if runtime is not None:
            await runtime.flush()

    def _track(self, run_id: str) -> RunHandle:
        handle = RunHandle(run_id)
        self._handles[run_id] = handle
        return handle

    def _adhoc_task(
        self, func: Callable[..., Any] | Task, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Task:
        """The Task a submission runs as, built once per callable and then reused."""
        if isinstance(func, Task):
            if args or kwargs:
                _check_bind(func.name, _signature(func.func), args, kwargs)
            return func
        cached = self._adhoc.get(func)
        if cached is not None:
            task, signature = cached
            if args or kwargs or task.args or task.kwargs:  # () was bound at construction
                _check_bind(task.name, signature, args, kwargs)
            return task
        target = f"{getattr(func, '__module__', None) or 'submit'}:" + getattr(
            func, "__qualname__", type(func).__qualname__
        )
        name = _UNSAFE_NAME_CHARS.sub("_", target)[:200]
        task = Task(name, func, args=args, kwargs=kwargs)
        if len(self._adhoc) >= _ADHOC_CACHE_SIZE:
            self._adhoc.clear()
        self._adhoc[func] = (task, _signature(func))
        return task


#: Seconds a plugin's awaitable from ``xtasks_run_finished`` may take.
OBSERVER_TIMEOUT = 10.0


async def _await_observer(awaitable: Awaitable[object]) -> None:
    try:
        with anyio.fail_after(OBSERVER_TIMEOUT):
            await awaitable
    except Exception:  # noqa: BLE001 - isolated: logged, never propagated
        _log.exception("a plugin's xtasks_run_finished awaitable failed")


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _check_bind(
    name: str, signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"the arguments do not fit {name}{signature}: {exc}", task=name, field="args"
        ) from None
