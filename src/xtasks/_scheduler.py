"""Scheduler: the one object users hold: registry, calls on tasks and runs, queries.

What it is made of lives beside it: ``_setup`` (plugins, config files, alerters),
``_engine`` (start and stop: task group, runtime), ``_bus`` (events, run handles),
``_stored`` (what the store keeps about tasks, read and written before start too),
``_audit`` (the trail of manual actions), ``_adhoc`` (the tasks ``submit`` runs). While
it runs, every change to the planner goes through :meth:`Scheduler._command`, which
hands it to ``Runtime.command``, the runtime's one entry point.
"""

from __future__ import annotations

import os
import socket
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, final

import anyio

from ._adhoc import AdhocTasks, check_bind, signature
from ._alert_delivery import Channel
from ._alerter import LoggingAlerter
from ._audit import Audited
from ._bus import EventBus, Observable, RunHandle
from ._clock import SystemClock
from ._engine import Engine, SchedulerStats, stats_of
from ._errors import SchedulerStateError, StoreError, TaskNotFoundError, XtasksError
from ._events import TaskStateChanged
from ._executors import Executors
from ._planner import Planner
from ._run_ids import time_ordered_ids
from ._run_log import attach as attach_run_log
from ._runs import AuditRecord, RunRecord, TaskInfo, TaskState
from ._setup import check_options, duplicate_task, load_setup, raise_all
from ._stored import AddedTasks, OpenOnce, set_stored_state, task_info
from ._task import Task
from .stores import open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
    from types import TracebackType

    from ._clock import Clock
    from ._config import Config
    from ._plugins import PluginOrigin
    from ._runs import RunStatus
    from ._runtime import Runtime
    from ._triggers import Trigger
    from .abc import Alerter, Executor, Store

__all__ = ["RunHandle", "Scheduler", "SchedulerStats"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound="Callable[..., Any]")

#: The state each control action leaves a task in.
_STATE_AFTER = {
    "pause": TaskState.PAUSED,
    "resume": TaskState.ACTIVE,
    "cancel": TaskState.CANCELLED,
}


@final
class Scheduler(Observable):
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
    :param executors: executors besides the built-ins (``async``, ``sync``, ``process``)
        and those plugins register; ``Task(executor=name)`` selects one by its name.
    :param max_concurrency: runs executing at once, all executors together.
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
        executors: Iterable[Executor] = (),
        max_concurrency: int = 100,
        thread_slots: int = 40,
        process_slots: int | None = None,
        shutdown_grace: float = 10.0,
        replica_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_options(shutdown_grace, thread_slots, process_slots)
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
            new_id=time_ordered_ids(),  # the planner reads no clock: ids come made
        )
        self._executors = Executors(thread_slots=thread_slots, process_slots=slots)
        self._opened_executors: list[Executor] = []
        self._engine: Engine | None = None  # while running
        self._runtime: Runtime | None = None  # the engine's, while running
        self._adhoc = AdhocTasks()
        #: Tasks another replica on the store defines differently: name -> its definition.
        self._mismatched: dict[str, str] = {}
        self._added = AddedTasks(self._mismatched)  # added while running: state loads
        self._store_gate = OpenOnce()
        setup = load_setup(plugins, config, strict=strict_plugins)
        #: Problems found while loading plugins and configuration (``strict_plugins=False``).
        self.problems: list[XtasksError] = setup.problems
        #: Plugins that were left out because they are broken.
        self.degraded: list[PluginOrigin] = setup.plugins.degraded
        self.plugins: list[PluginOrigin] = setup.plugins.plugins
        self.config: Config = setup.config
        hooks = setup.plugins.manager.hook
        for executor in executors:
            self._add_executor(executor, "Scheduler(executors=...)")
        for executor, origin in setup.plugins.executors:  # before the plugins' tasks
            self._add_executor(executor, origin)
        self._bus = EventBus(hooks, cancel=self._cancel_run)
        #: Where each task came from, by name (tasks added by the application: absent).
        self.task_origins: dict[str, PluginOrigin] = setup.register_tasks(self.add)
        configured = setup.build_alerters()
        self._channels += configured
        self.alerters = (*self.alerters, *(channel.alerter for channel in configured))
        setup.raise_if_strict()
        # After the plugins: the URL's scheme may be one a plugin registered.
        stores = setup.plugins.stores
        self.store: Store = open_store(store, stores) if isinstance(store, str) else store
        hooks.xtasks_configure.call_historic(kwargs={"scheduler": self})

    def _add_executor(self, executor: Executor, origin: str) -> None:
        self._executors.add(executor, origin)
        self._planner.set_slots(executor.name, executor.slots, reports_start=executor.reports_start)

    @property
    def executors(self) -> Mapping[str, Executor]:
        """The executors tasks may select, by name: the built-ins and those registered."""
        return MappingProxyType(self._executors.by_name)

    # --- registry ---------------------------------------------------------------------

    def add(self, task: Task) -> Task:
        """Register ``task`` with its ``tasks:`` configuration applied; return that.

        Its trigger counts from now. While running, its stored state (paused, last fire,
        failure streak, grid anchor) loads first, as at start; calls by name wait for it.

        :raises DuplicateTaskError: the name is taken.
        :raises DependencyCycleError: its ``depends_on`` closes a cycle.
        :raises UnknownDependencyError: (only while running) a dependency is unknown;
            before start, tasks may be added in any order.
        """
        planner, engine = self._planner, self._engine
        if task.name in planner.tasks:  # say who has the name and how to resolve the clash
            raise duplicate_task(task.name, self.task_origins)
        task = self.config.apply(task)
        self._executors.check(task)
        if engine is None:  # armed once, at start, from its stored state
            planner.add_task(task, self.clock.now(), arm=False)
            return task
        self._command(planner.add_task, task, self.clock.now(), arm=False)  # armed once loaded
        try:
            planner.validate()
        except Exception:
            self._command(planner.remove_task, task.name, self.clock.now())
            raise
        self._added.load(
            engine.services,
            self.store,
            planner,
            task,
            lambda name, record: self._command(planner.restore, name, record, self.clock.now()),
        )
        return task

    def task(
        self, *, name: str | None = None, trigger: Trigger | None = None, **options: Any
    ) -> Callable[[F], F]:
        """Decorator: ``@scheduler.task(trigger=Every(minutes=5), max_retries=3)`` adds
        ``Task(func.__name__, func, ...)`` (``name=`` overrides the name; other keywords
        are :class:`Task` fields) and returns the function unchanged."""

        def register(func: F) -> F:
            named = name if name is not None else str(getattr(func, "__name__", ""))
            self.add(Task(named, func, trigger=trigger, **options))
            return func

        return register

    async def _loaded(self, name: str, what: str) -> None:
        """Return once a task added while running has its stored state applied."""
        if self._added and await self._added.wait(name):
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
        """Every problem that would stop this scheduler (broken plugins and config files,
        unknown dependencies and task names), without raising. Empty: it can start."""
        problems: list[XtasksError] = list(self.problems)
        problems.extend(self._planner.unknown_dependencies())
        problems.extend(self.config.unknown_tasks(self.tasks))
        problems.extend(self.config.unknown_alert_channels(self.tasks))
        return problems

    # --- running things ---------------------------------------------------------------

    async def trigger(self, name: str, *, by: str | None = None) -> RunHandle:
        """Run ``name`` now, after fresh runs of its dependencies; honours ``overlap``.

        :param by: who asks (e.g. ``"manager-token@127.0.0.1"``): the action goes to
            the audit trail, refused or not, with the run id (see :meth:`audit`), and
            is refused if the task was paused or cancelled on any replica before.
        :raises TaskNotFoundError: no such task.
        :raises TaskStateError: the task is paused or cancelled.
        :raises SchedulerStateError: the scheduler is not running.
        :raises StoreError: (only with ``by``) the run goes ahead, but its audit record
            could not be written; the message names the run.
        """
        self._require_running("trigger")
        await self._loaded(name, "trigger")
        if by is None:  # the hot path
            now = self.clock.now()
            return self._bus.track(self._command(self._planner.request, name, now).id)
        await self._caught_up()  # a person's action: refused if paused anywhere since
        now = self.clock.now()
        async with Audited(self.store, by, "run", name, now) as audit:
            handle = self._bus.track(self._command(self._planner.request, name, now).id)
            audit.detail = handle.id
        return handle

    async def run(self, name: str, /, *args: Any, **kwargs: Any) -> RunRecord:
        """:meth:`trigger` ``name`` and return its final :class:`RunRecord`.

        Arguments, if any, replace the task's own ``args`` and ``kwargs`` for this run
        only. Cancelling the caller leaves the run going (``RunHandle.cancel`` stops it).

        :raises ConfigError: the arguments do not fit the task's function.
        :raises TaskNotFoundError: as for :meth:`trigger`.
        :raises TaskStateError: as for :meth:`trigger`.
        :raises SchedulerStateError: as for :meth:`trigger`.
        """
        self._require_running("run")
        await self._loaded(name, "run")
        task = self.tasks.get(name)
        if task is None:
            raise TaskNotFoundError(name, sorted(self.tasks))
        mine = bool(args or kwargs)  # else the task's own arguments
        if mine:
            check_bind(name, signature(task.func), args, kwargs)
        run = self._command(
            self._planner.request,
            name,
            self.clock.now(),
            args=args if mine else None,
            kwargs=kwargs if mine else None,
        )
        return await self._bus.track(run.id).wait()

    async def submit(
        self, func: Callable[..., Any] | Task, /, *args: Any, **kwargs: Any
    ) -> RunHandle:
        """Run ``func(*args, **kwargs)`` once, tracked in history like any run.

        A :class:`Task` gives the run policies (retries, timeout, priority; arguments
        given here replace its own); a plain callable runs with default policies.

        :raises ConfigError: the arguments do not fit the callable's signature.
        :raises SchedulerStateError: the scheduler is not running.
        """
        self._require_running("submit")
        task = self._adhoc.task_for(func, args, kwargs)
        if isinstance(func, Task) and not args and not kwargs:
            args, kwargs = func.args, dict(func.kwargs)
        run = self._command(self._planner.submit, task, args, kwargs, self.clock.now())
        return self._bus.track(run.id)

    async def pause(self, name: str, *, by: str | None = None) -> None:
        """Stop firing ``name`` (persisted); runs already going finish.

        Before start, pause, resume and cancel write the stored state, applied at start.
        Running, each applies the changes other replicas made before it, then its own,
        which every replica sharing the store applies within about a second.

        :param by: who asks, for the audit trail (see :meth:`trigger`).
        :raises TaskNotFoundError: no such task.
        """
        await self._control("pause", name, by)

    async def resume(self, name: str, *, by: str | None = None) -> None:
        """Fire ``name`` again from now on (persisted); as :meth:`pause` for ``by``."""
        await self._control("resume", name, by)

    async def cancel(self, name: str, *, by: str | None = None) -> None:
        """Stop firing ``name``, cancel its queued runs and its running async run.

        ``cancelled`` is persisted; the task and its history stay visible, and
        :meth:`resume` re-activates it. A running ``sync`` call cannot be interrupted:
        it is recorded cancelled and its thread finishes in the background. One run
        only: :meth:`RunHandle.cancel`. As :meth:`pause` for ``by`` and before start.
        """
        await self._control("cancel", name, by)

    async def _control(self, action: str, name: str, by: str | None) -> None:
        """Pause, resume or cancel ``name``, persist it, and audit it when ``by`` is given.

        Running: a planner command. Before start: the stored state only (start applies it).
        """
        if self._runtime is not None:
            await self._loaded(name, action)
            await self._caught_up()  # a resume right after a pause elsewhere resumes
        store = await self._opened_store()
        now = self.clock.now()
        async with Audited(store, by, action, name, now):
            if self._runtime is not None:
                self._command(getattr(self._planner, action), name, now)
                await self._runtime.flush()  # stored and published when we return
            elif await set_stored_state(store, self._planner, name, _STATE_AFTER[action], now):
                self._bus.publish(TaskStateChanged(name, _STATE_AFTER[action]))

    # --- queries ----------------------------------------------------------------------

    async def audit(
        self, limit: int = 50, *, offset: int = 0, task: str | None = None
    ) -> list[AuditRecord]:
        """The audit trail, newest first: actions called with ``by=`` (trigger as
        ``"run"``, pause, resume, cancel), each ``"ok"``, ``"refused"`` (unknown task,
        paused or cancelled) or ``"failed"``. An action whose record cannot be written
        stands, and the caller gets a :class:`StoreError` saying so. Works before start.
        """
        store = await self._opened_store()
        return await store.list_audit(task=task, limit=limit, offset=offset)

    def stats(self) -> SchedulerStats:
        """Runs queued and running here, the timer loop's lag, failed alerts; no I/O, O(1).

        All zero while the scheduler is not running.
        """
        return stats_of(self._engine, self._planner)

    def states(self) -> dict[str, TaskState]:
        """Every task's state (active, paused, cancelled), by name, from memory: cheap
        enough for every metrics scrape. A task added while running is ``active`` until
        its stored state is loaded.

        :raises SchedulerStateError: not running (the stored states are loaded at start).
        """
        self._require_running("read the task states")
        return self._planner.states()

    async def describe(self, name: str) -> TaskInfo:
        """Return the task, its state, next fire, last run and consecutive failures.

        Before start, state and failures come from the store and ``next_fire`` is
        ``None``: nothing fires until the scheduler runs. Running, the state is the
        fleet's: a pause another replica sharing the store made before this call is
        applied here first (one small read of the store).
        """
        running = self._runtime is not None
        if running:
            await self._loaded(name, "describe")
            await self._caught_up()
        store = await self._opened_store()
        return await task_info(store, self._planner, name, running=running)

    async def history(
        self,
        name: str,
        limit: int = 50,
        *,
        offset: int = 0,
        statuses: Collection[RunStatus] | None = None,
    ) -> list[RunRecord]:
        """Return ``name``'s run records, newest first (works before start)."""
        store = await self._opened_store()
        return await store.list_runs(task=name, statuses=statuses, limit=limit, offset=offset)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the latest record of the run ``run_id``, or ``None`` (works before start)."""
        live = self._planner.live_record(run_id) if self._runtime is not None else None
        if live is not None:
            return live
        return await (await self._opened_store()).get_run(run_id)

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Scheduler:
        if self._engine is not None:
            raise SchedulerStateError("the scheduler is already running")
        attach_run_log(self)  # failed attempts, failures, recoveries, skips, misses
        self._planner.validate()  # each task's executor was checked by add: they are all known
        unknown: list[XtasksError] = [
            *self.config.unknown_tasks(self.tasks),
            *self.config.unknown_alert_channels(self.tasks),
        ]
        if unknown:
            raise_all(unknown)
        # Every registered executor, not just those used now: a task added while running
        # may select any of them.
        self._opened_executors = await self._executors.open(self._executors.by_name.values())
        try:
            engine = await Engine.start(
                self._planner,
                self.store,
                self.clock,
                self._executors,
                bus=self._bus,
                channels=self._channels,
                channels_for=self.config.alert_channels_for,
                replica=self.replica_id,
                open_store=self._opened_store,  # not again if a call before start opened it
                close_store=self._close_store,
                mismatched=self._mismatched,
            )
        except BaseException:
            await self._executors.close(self._opened_executors)
            raise
        self._engine = engine
        self._runtime = engine.runtime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        engine = self._engine
        assert engine is not None
        try:
            await engine.stop_runs(self.shutdown_grace, self._bus)
        finally:
            self._engine = self._runtime = None
            try:
                await engine.close()  # the block's own exception goes on as itself
            finally:
                with anyio.CancelScope(shield=True):
                    await self._executors.close(self._opened_executors)

    async def aclose(self) -> None:
        """Close the store a call before start opened (leaving ``async with`` does too):
        for a scheduler used to read or steer the store without running it."""
        if self._runtime is not None:
            raise SchedulerStateError("cannot aclose a running scheduler; leave `async with`")
        if self._store_gate.is_open:
            await self._close_store()

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

    def _command(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Apply one planner command: through the runtime while running (it carries out
        the decisions), a plain call before start (the decisions wait for start)."""
        runtime = self._runtime
        if runtime is None:
            return fn(*args, **kwargs)
        return runtime.command(fn, *args, **kwargs)

    async def _caught_up(self) -> None:
        """Apply the state changes other replicas stored before now (one small read):
        what is read or done next goes by the fleet's state, not by this replica's
        view of it, which the state sync refreshes only about once a second."""
        runtime = self._runtime
        if runtime is None:
            return
        try:
            await runtime.state_sync.catch_up()
        except StoreError:
            # The store cannot say: this replica's view will do, as before (the sync's
            # loop logs the outage once; what comes next reports it if it fails too).
            pass

    def _cancel_run(self, run_id: str) -> bool:
        """Cancel one run, not its task (``RunHandle.cancel``); False when it is not live."""
        if self._runtime is None:
            return False
        reason = "cancelled by its handle"
        return self._command(self._planner.cancel_run, run_id, self.clock.now(), reason)

    def _require_running(self, what: str) -> None:
        if self._runtime is None:
            raise SchedulerStateError(
                f"cannot {what}: the scheduler is not running; "
                "start it with `async with scheduler:` (or scheduler.serve())"
            )

    async def _opened_store(self) -> Store:
        """The store, opened by the first call that needs it and kept open until the
        scheduler stops (or :meth:`aclose`)."""
        return await self._store_gate.open(self.store)

    async def _close_store(self) -> None:
        await self._store_gate.close(self.store)
