"""The anyio shell around the planner: it sleeps, executes, records and delivers.

It adds no policy. Four kinds of task live in the scheduler's task group:

- the timer loop sleeps until the planner's next wake-up (never polls), claims due
  fires in the store and hands the claims back to the planner;
- workers, a pool that grows up to ``max_concurrency`` and is reused: each pulls one
  ready run at a time (no task spawned per run);
- the recorder writes run records and task state to the store in batches, then
  publishes events and resolves run handles, so what an event says is already stored;
- alerts go to :class:`~._alert_delivery.AlertDelivery`, which never blocks a run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, final

import anyio

from ._errors import RunTimeoutError, StoreError
from ._events import RunChanged, TaskStateChanged
from ._planner import CancelAttempt, ClaimFire, RecordRun, SaveTask, SendAlert
from ._runs import ErrorInfo, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._alert_delivery import AlertDelivery
    from ._clock import Clock
    from ._events import Event
    from ._executors import Executors
    from ._planner import Planner, Run
    from ._runs import RunRecord
    from .abc import Store

__all__ = ["Runtime"]

_log = logging.getLogger("xtasks")
P = ParamSpec("P")
T = TypeVar("T")


@final
class Runtime:
    """Executes what the planner decides. Created and driven by :class:`Scheduler`."""

    def __init__(
        self,
        planner: Planner,
        store: Store,
        clock: Clock,
        executors: Executors,
        *,
        alerts: AlertDelivery,
        publish: Callable[[Event], None],
        replica: str,
    ) -> None:
        self.planner = planner
        self.store = store
        self.clock = clock
        self.executors = executors
        self.replica = replica
        self.alerts = alerts
        #: Seconds between the due time of the latest timer deadline that brought fires
        #: and the moment the timer loop handled it (0.0 until one did).
        self.timer_lag = 0.0
        self._publish = publish
        self._claims: list[ClaimFire] = []
        self._pending: list[RecordRun | SaveTask | anyio.Event] = []
        self._record_wakeup = anyio.Event()
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._sleep_scope: anyio.CancelScope | None = None
        self._sleep_deadline: datetime | None = None
        self._timer_scope = anyio.CancelScope()
        self._lease_scope = anyio.CancelScope()
        self._leased: set[str] = set()  # runs whose running record the store holds
        self._workers = 0
        self._idle: anyio.Event | None = None
        send, receive = anyio.create_memory_object_stream["Run"](planner.max_concurrency)
        self._run_send: MemoryObjectSendStream[Run] = send
        self._run_receive: MemoryObjectReceiveStream[Run] = receive
        self._tg: TaskGroup | None = None
        self._recorder_done = anyio.Event()
        self._recorder_stop = False
        self._stopping = False
        self._cancel_all: str | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self, tg: TaskGroup) -> None:
        """Start the loops in ``tg`` (the scheduler's task group)."""
        self._tg = tg
        self.alerts.start(tg)
        tg.start_soon(self._recorder, name="xtasks recorder")
        tg.start_soon(self._timer_loop, name="xtasks timers")
        tg.start_soon(self._lease_loop, name="xtasks leases")
        self.apply()

    async def stop(self, grace: float) -> None:
        """Stop firing, let running runs finish for ``grace`` seconds, cancel the rest.

        Every run ends recorded: finished, or ``cancelled`` with reason ``shutdown``.
        """
        self._stopping = True
        self._timer_scope.cancel()
        self.planner.shutdown(self.clock.now())
        self.apply()
        with anyio.move_on_after(grace):
            await self._wait_idle()
        self._cancel_all = "shutdown"  # runs dispatched but not yet picked up, too
        for run_id, scope in list(self._scopes.items()):
            self._cancel_reasons.setdefault(run_id, "shutdown")
            scope.cancel()
        with anyio.move_on_after(max(grace, 1.0)):
            await self._wait_idle()
        self._lease_scope.cancel()
        self._run_send.close()
        self._run_receive.close()  # workers hold clones; this original is never read
        self._recorder_stop = True
        self._record_wakeup.set()
        await self._recorder_done.wait()
        await self.alerts.close(max(grace, 1.0))

    async def flush(self) -> None:
        """Return once everything recorded so far is in the store and published."""
        marker = anyio.Event()
        self._pending.append(marker)
        self._record_wakeup.set()
        await marker.wait()

    @property
    def executing(self) -> int:
        """Attempts executing now (inside a worker; dispatched ones not picked up excluded)."""
        return len(self._scopes)

    async def _wait_idle(self) -> None:
        while self.planner.running:
            self._idle = anyio.Event()
            await self._idle.wait()

    # --- applying decisions -----------------------------------------------------------

    def command(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Apply one planner command (``fn``, a planner method) and carry out what follows.

        The only way code outside the runtime changes the planner while it runs.
        """
        try:
            return fn(*args, **kwargs)
        finally:
            self.apply()

    def apply(self) -> None:
        """Carry out the planner's decisions, start what is ready, re-aim the timer."""
        planner = self.planner
        decisions = planner.drain()
        if decisions:
            pending = self._pending
            for d in decisions:
                if type(d) is RecordRun or type(d) is SaveTask:
                    pending.append(d)
                elif type(d) is ClaimFire:
                    self._claims.append(d)
                elif type(d) is SendAlert:
                    self.alerts.put(d.alert)
                elif type(d) is CancelAttempt:
                    # A run dispatched but not yet picked up has no scope: its worker
                    # finds the reason and cancels before calling.
                    self._cancel_reasons[d.run_id] = d.reason
                    scope = self._scopes.get(d.run_id)
                    if scope is not None:
                        scope.cancel()
            self._record_wakeup.set()
        self._dispatch()
        if self._sleep_scope is not None:
            wake = planner.next_wakeup()
            if self._claims or (
                wake is not None and (self._sleep_deadline is None or wake < self._sleep_deadline)
            ):
                self._sleep_scope.cancel()

    def _dispatch(self) -> None:
        planner = self.planner
        if self._recorder_stop:
            return
        run = planner.next_ready(self.clock.now())
        while run is not None:
            if self._workers < planner.running and self._tg is not None:
                self._workers += 1
                self._tg.start_soon(self._worker, self._run_receive.clone(), name="xtasks worker")
            self._run_send.send_nowait(run)
            run = planner.next_ready(self.clock.now())

    # --- loops ------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        planner = self.planner
        clock = self.clock
        deadline: datetime | None = None
        with self._timer_scope:
            while True:
                now = clock.now()
                planner.advance(now)
                self.apply()
                if self._claims and deadline is not None and deadline <= now:
                    # Woken for fires: how late were we? Two datetime ops per wake-up.
                    self.timer_lag = (now - deadline).total_seconds()
                while self._claims:
                    claims, self._claims = self._claims, []
                    for claim in claims:
                        if await self._claim(claim):
                            planner.fire_claimed(claim, clock.now())
                    self.apply()
                deadline = planner.next_wakeup()
                self._sleep_deadline = deadline
                with anyio.CancelScope() as self._sleep_scope:
                    await clock.sleep_until(deadline)
                self._sleep_scope = None

    async def _lease_loop(self) -> None:
        """Heartbeat our running runs and reap the runs of replicas that went silent.

        Every ``lease_ttl / 3`` seconds of real (store) time, whatever the scheduling
        clock says. A run of ours that another replica reaped is cancelled here: its
        result would be refused anyway.
        """
        store = self.store
        interval = max(store.lease_ttl / 3, 0.01)
        with self._lease_scope:
            while True:
                try:
                    if self._leased:
                        gone = await store.renew_leases(self.replica, list(self._leased))
                        for run_id in gone:
                            self._leased.discard(run_id)
                            scope = self._scopes.get(run_id)
                            if scope is not None:
                                self._cancel_reasons[run_id] = "lost: its lease was reaped"
                                scope.cancel()
                    for record in await store.reap_lost():
                        _log.warning(
                            "%s (run %s of task %r)", record.reason, record.id, record.task
                        )
                        self._publish(RunChanged(record))
                        self.planner.recover_lost(record, self.clock.now())
                    self.apply()
                except StoreError:
                    _log.exception("could not renew leases or reap lost runs")
                await anyio.sleep(interval)

    async def _claim(self, claim: ClaimFire) -> bool:
        try:
            won = await self.store.claim_fire(claim.task, claim.fire_time, self.replica)
        except StoreError:
            _log.exception(
                "could not claim fire %s of task %r; it will not run here",
                claim.fire_time.isoformat(),
                claim.task,
            )
            return False
        if not won:
            _log.debug(
                "fire %s of task %r was claimed by another replica",
                claim.fire_time.isoformat(),
                claim.task,
            )
        return won

    async def _worker(self, receive: MemoryObjectReceiveStream[Run]) -> None:
        async with receive:
            async for run in receive:
                await self._execute(run)

    async def _execute(self, run: Run) -> None:
        task = run.entry.task
        result: Any = None
        error: BaseException | None = None
        with anyio.CancelScope() as scope:
            self._scopes[run.id] = scope
            if self._cancel_all or run.id in self._cancel_reasons:
                scope.cancel()
            try:
                if task.timeout is None:
                    result = await self.executors.call(task, run.args, run.kwargs)
                else:
                    with anyio.move_on_after(task.timeout) as limit:
                        result = await self.executors.call(task, run.args, run.kwargs)
                    if limit.cancelled_caught:
                        error = RunTimeoutError(task.name, task.timeout)
            except Exception as exc:  # noqa: BLE001 - a task's failure is data, not a crash
                error = exc
        del self._scopes[run.id]
        now = self.clock.now()
        if scope.cancel_called:
            reason = self._cancel_reasons.pop(run.id, None) or self._cancel_all or "cancelled"
            self.planner.cancelled(run, now, reason)
        elif error is not None:
            self.planner.failed(run, now, ErrorInfo.from_exception(error))
        else:
            self.planner.succeeded(run, now, result)
        self.apply()
        if self._idle is not None and not self.planner.running:
            self._idle.set()

    async def _recorder(self) -> None:
        try:
            while True:
                await self._record_wakeup.wait()
                self._record_wakeup = anyio.Event()
                while self._pending:
                    batch, self._pending = self._pending, []
                    await self._record(batch)
                if self._recorder_stop:
                    return
        finally:
            self._recorder_done.set()

    async def _record(self, batch: list[RecordRun | SaveTask | anyio.Event]) -> None:
        """Store then publish ``batch`` in order; flush markers are set when reached."""
        group: list[RunRecord] = []
        for item in batch:
            if type(item) is RecordRun:
                group.append(item.record)
                continue
            await self._write(group)
            group = []
            if isinstance(item, SaveTask):
                try:
                    await self.store.save_task(item.task, item.record)
                except StoreError:
                    _log.exception("could not save the state of task %r", item.task)
                if item.state_changed:
                    self._publish(TaskStateChanged(item.task, item.record.state))
            else:
                assert isinstance(item, anyio.Event)
                item.set()
        await self._write(group)

    async def _write(self, group: list[RunRecord]) -> None:
        """Save a group of records (the newest snapshot of each run), then publish all."""
        if not group:
            return
        latest = {record.id: record for record in group}
        leased = self._leased
        for record in latest.values():
            if record.status is RunStatus.RUNNING:
                leased.add(record.id)
            else:
                leased.discard(record.id)
        try:
            refused = await self.store.save_runs(latest.values())
        except StoreError:
            _log.exception("could not record %d run(s) in the store", len(latest))
        else:
            for run_id in refused:
                _log.warning(
                    "run %s was marked lost by another replica while it ran here; "
                    "its result was not recorded",
                    run_id,
                )
        publish = self._publish
        for record in group:
            publish(RunChanged(record))
