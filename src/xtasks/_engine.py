"""What exists only while a Scheduler runs: its task group, the runtime in it, and the
order in which they start and stop.

Start: open the store (once), read every task's stored state, arm the planner from it,
open the task group, start the bus and the runtime's loops. Stop, in reverse: the
runtime stops firing and records every run, the event streams end, the idle loops are
cancelled, the store is closed. :class:`SchedulerStats` is read from the same parts.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import anyio

from ._alert_delivery import AlertDelivery
from ._errors import XtasksError
from ._loop_monitor import LoopMonitor
from ._runtime import Runtime
from ._service import ServiceGroup
from ._stored import load_records, watch_definitions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence

    from anyio.abc import TaskGroup

    from ._alert_delivery import Channel
    from ._bus import EventBus
    from ._clock import Clock
    from ._executors import Executors
    from ._planner import Planner
    from .abc import Store

__all__ = ["Engine", "SchedulerStats", "stats_of"]


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
    #: Whether the store takes writes (records, claims, lease renewals): false from a
    #: failed one until it works again.
    store_writable: bool = True
    #: Run records and task states kept in memory until the store takes them.
    store_backlog: int = 0
    #: Writes that failed since the scheduler started (each is tried again).
    store_write_failures: int = 0
    #: The last write, claim or lease error while they fail; ``None`` when they work.
    store_error: str | None = None
    #: Due fires the store could not claim, waiting to be recorded ``missed``.
    fires_unclaimed: int = 0
    #: Seconds the event loop came back late to a periodic sleeper, at its latest wake-up:
    #: a task blocking the loop (a synchronous call in async code) shows here.
    loop_lag: float = 0.0
    #: The largest ``loop_lag`` of the last minute.
    loop_lag_max: float = 0.0
    #: Tasks that another replica sharing the store defines differently (function,
    #: trigger or options), found when this one registered them; the log says how.
    mismatched_tasks: tuple[str, ...] = ()


@final
class Engine:
    """A started scheduler's task group and runtime; :meth:`start` builds one."""

    def __init__(
        self,
        runtime: Runtime,
        tg: TaskGroup,
        services: ServiceGroup,
        stack: AsyncExitStack,
        loop: LoopMonitor,
        mismatched: dict[str, str],
    ) -> None:
        self.runtime = runtime
        self.tg = tg
        #: Starts the scheduler's own tasks, shielded from the application's cancellation.
        self.services = services
        self._stack = stack
        self.loop = loop  # measures the event loop's lag; warns about what blocks it
        self.mismatched = mismatched  # tasks another replica defines differently

    @classmethod
    async def start(
        cls,
        planner: Planner,
        store: Store,
        clock: Clock,
        executors: Executors,
        *,
        bus: EventBus,
        channels: Sequence[Channel],
        channels_for: Callable[[str], Collection[str] | None],
        replica: str,
        open_store: Callable[[], Awaitable[object]],
        close_store: Callable[[], Awaitable[None]],
        mismatched: dict[str, str],
    ) -> Engine:
        """Open the store, arm every task from its stored state, start the loops."""
        async with AsyncExitStack() as stack:
            await open_store()
            stack.push_async_callback(close_store)
            mismatched.clear()
            records = await load_records(store, planner, list(planner.tasks), mismatched)
            planner.start(clock.now(), records)  # each task armed once, from its stored state
            tg: TaskGroup = await stack.enter_async_context(anyio.create_task_group())
            services = ServiceGroup(tg)
            bus.start(services)
            alerts = AlertDelivery(channels, store, channels_for, bus.publish)
            runtime = Runtime(
                planner,
                store,
                clock,
                executors,
                alerts=alerts,
                publish=bus.publish,
                replica=replica,
            )
            executors.start_serving(services)
            runtime.start(services)
            loop = LoopMonitor()
            loop.start(services)  # ends at close
            services.start_soon(
                watch_definitions, store, planner, mismatched, name="xtasks definitions"
            )
            return cls(runtime, tg, services, stack.pop_all(), loop, mismatched)

    async def stop_runs(self, grace: float, bus: EventBus) -> None:
        """Stop firing, let runs finish for ``grace`` seconds, record them all; end the
        event streams. Shielded: a cancelled caller still leaves nothing half-written."""
        with anyio.CancelScope(shield=True):
            await self.runtime.stop(grace)
            bus.stop()

    async def close(self) -> None:
        """Cancel the idle loops left, leave the task group, close the store.

        The exception leaving the ``async with`` block (the application's own) is not
        handed to the task group, which would wrap it in an ``ExceptionGroup``: it goes on
        as itself. A failure of the scheduler's own tasks comes out as one
        :class:`XtasksError` (the group is its cause)."""
        self.services.cancel()  # every run is recorded by now: what is left is idle
        self.runtime.executors.close_now()  # idle threads end; abandoned calls end theirs
        self.tg.cancel_scope.cancel()
        try:
            await self._stack.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            _, failures = group.split(anyio.get_cancelled_exc_class())
            if failures is None:
                raise
            first = failures.exceptions[0]
            raise XtasksError(
                f"the scheduler failed: {type(first).__name__}: {first} "
                f"({len(failures.exceptions)} error(s); see the cause)"
            ) from group


def stats_of(engine: Engine | None, planner: Planner) -> SchedulerStats:
    """``Scheduler.stats``: read from memory; all zero while not running."""
    if engine is None:
        return SchedulerStats(queued=0, running=0, timer_lag=0.0)
    runtime = engine.runtime
    store = runtime.recorder.health
    # Writes of records, claims and lease renewals: the first failing one says why (a
    # claim or lease error before the latest successful write is over).
    store_error = store.last_error if not store.writable else None
    for error in (runtime.claimer.claim_error, runtime.lease_error):
        if store_error is None and error is not None and error[1] == runtime.recorder.writes_ok:
            store_error = error[0]
    running = runtime.executing
    # Dispatched to the workers but not picked up yet: waiting for a worker.
    dispatched = max(planner.running - running, 0)
    return SchedulerStats(
        queued=planner.ready_count + dispatched,
        running=running,
        timer_lag=runtime.timer_lag,
        alerts_failed=runtime.alerts.failed,
        alerts_dropped=runtime.alerts.dropped,
        store_writable=store_error is None,
        store_backlog=store.backlog,
        store_write_failures=store.write_failures,
        store_error=store_error,
        fires_unclaimed=runtime.claimer.unclaimed,
        loop_lag=engine.loop.lag,
        loop_lag_max=engine.loop.max_lag,
        mismatched_tasks=tuple(sorted(engine.mismatched)),
    )
