"""The anyio shell around the planner: it sleeps, executes, records and delivers.

It adds no policy. :meth:`Runtime.command` is the one way in: it applies a planner
command, drains the planner and carries out every decision. Besides the recorder
(:mod:`._recorder`) and alert delivery (:mod:`._alert_delivery`), three kinds of task
live in the scheduler's task group:

- the timer loop sleeps until the planner's next wake-up (never polls) and lets the
  planner handle what is due; it never waits for the store;
- the claimer (:mod:`._claimer`) claims due fires in the store, apart from the timer;
- workers, a pool that grows up to ``max_concurrency`` and is reused: each takes one
  :class:`StartAttempt` at a time under a cancel scope its runs share (no task, and no
  scope, per run; a cancelled run costs its worker a fresh scope);
- the lease loop heartbeats our live runs and reaps those of silent replicas;
- the state sync (:mod:`._state_sync`) applies pauses, resumes and cancels made on other
  replicas.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, assert_never, final

import anyio
import anyio.lowlevel

from ._claimer import Claimer
from ._decisions import CancelAttempt, ClaimFire, RecordRun, SaveTask, SendAlert, StartAttempt
from ._errors import RunTimeoutError, StoreError
from ._recorder import Recorder
from ._runs import ErrorInfo
from ._state_sync import StateSync

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from ._alert_delivery import AlertDelivery
    from ._clock import Clock
    from ._events import Event
    from ._executors import Executors
    from ._planner import Planner
    from ._service import Spawner
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
        self._by_name = executors.by_name
        self.replica = replica
        self.alerts = alerts
        self.recorder = Recorder(store, publish)
        #: Seconds between the due time of the latest timer deadline that brought fires
        #: and the moment the timer loop handled it (0.0 until one did).
        self.timer_lag = 0.0
        #: Why lease renewal or reaping fails, while it does, and the recorder's
        #: ``writes_ok`` then (as ``Claimer.claim_error``); else ``None``.
        self.lease_error: tuple[str, int] | None = None
        self.claimer = Claimer(
            store,
            replica,
            self.recorder,
            lambda claim: self.command(planner.fire_claimed, claim, clock.now()),
        )
        self.state_sync = StateSync(
            store, lambda name, state: self.command(planner.apply_state, name, state, clock.now())
        )
        self.recorder.state_stored = self.state_sync.changed
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._executing: dict[str, StartAttempt] = {}  # the attempts inside a worker
        self._cancel_reasons: dict[str, str] = {}
        self._sleep_scope: anyio.CancelScope | None = None
        self._sleep_deadline: datetime | None = None
        self._timer_scope = anyio.CancelScope()
        self._lease_scope = anyio.CancelScope()
        self._idle: anyio.Event | None = None
        # Attempts dispatched to the workers: a deque, not a stream, so that a worker
        # reporting an end takes the next attempt itself instead of parking and waking
        # another one (an event and a trip through the loop per run).
        self._starts: deque[StartAttempt] = deque()
        self._workers = 0
        self._parked: list[anyio.Event] = []  # idle workers, each waiting for a start
        self._taking = 0  # workers reporting an end, each about to take the next start
        self._closed = False
        self._tg: Spawner | None = None
        self._cancel_all: str | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self, tg: Spawner) -> None:
        """Start the loops in ``tg`` (the scheduler's task group)."""
        self._tg = tg
        self.alerts.start(tg)
        self.recorder.start(tg)
        tg.start_soon(self._timer_loop, name="xtasks timers")
        tg.start_soon(self.claimer.run, name="xtasks claims")
        tg.start_soon(self._lease_loop, name="xtasks leases")
        tg.start_soon(self.state_sync.run, name="xtasks state sync")
        self._apply()  # what the planner decided before start (runs restored, say)

    async def stop(self, grace: float) -> None:
        """Stop firing, let running runs finish for ``grace`` seconds, cancel the rest.

        Every run ends recorded: finished, or ``cancelled`` with reason ``shutdown``.
        """
        self._timer_scope.cancel()
        self.state_sync.stop()
        self.claimer.stop()  # fires not claimed yet: the next start's catch-up
        self.command(self.planner.shutdown, self.clock.now())
        with anyio.move_on_after(grace):
            await self._wait_idle()
        if self._executing:
            _log.warning(
                "shutdown grace (%.1f s) is over; cancelling %d run(s) still going: %s",
                grace,
                len(self._executing),
                _describe(self._executing.values()),
            )
        self._cancel_all = "shutdown"  # attempts dispatched but not yet picked up, too
        for run_id, scope in list(self._scopes.items()):
            self._cancel_reasons.setdefault(run_id, "shutdown")
            scope.cancel()
        with anyio.move_on_after(max(grace, 1.0)):
            await self._wait_idle()
        if self._executing:
            _log.warning(
                "not waiting for %d cancelled run(s) that have not stopped (a sync call "
                "cannot be interrupted; its thread finishes in the background): %s",
                len(self._executing),
                _describe(self._executing.values()),
            )
        self._lease_scope.cancel()
        self._closed = True
        for parked in self._parked:
            parked.set()
        await self.recorder.stop(max(grace, 1.0))
        await self.alerts.close(max(grace, 1.0))

    async def flush(self) -> None:
        """Return once everything recorded so far is in the store and published."""
        await self.recorder.flush()

    @property
    def executing(self) -> int:
        """Attempts executing now (inside a worker; dispatched ones not picked up excluded)."""
        return len(self._scopes)

    async def _wait_idle(self) -> None:
        while self.planner.running:
            self._idle = anyio.Event()
            await self._idle.wait()

    # --- the one entry point ----------------------------------------------------------

    def command(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Apply one planner command (``fn``, a planner method), then carry out every
        decision it led to. The only way anything changes the planner while it runs."""
        try:
            return fn(*args, **kwargs)
        finally:
            self._apply()

    def _apply(self) -> None:
        """Drain the planner (it starts what the free slots allow) and act on each decision."""
        recorder = self.recorder
        for decision in self.planner.drain(self.clock.now()):
            match decision:
                case RecordRun(record=record):
                    recorder.record(record)
                case StartAttempt():
                    self._dispatch(decision)
                case SaveTask():
                    if decision.state_changed and not decision.from_store:
                        self.state_sync.changing(decision.task)
                    recorder.save_task(decision)
                case ClaimFire():
                    self.claimer.add(decision)
                case SendAlert(alert=alert):
                    self.alerts.put(alert)
                case CancelAttempt(run_id=run_id, reason=reason):
                    # An attempt dispatched but not yet picked up has no scope: its worker
                    # finds the reason and cancels before calling.
                    self._cancel_reasons[run_id] = reason
                    scope = self._scopes.get(run_id)
                    if scope is not None:
                        scope.cancel()
                case _:
                    assert_never(decision)
        if self._sleep_scope is not None:
            wake = self.planner.next_wakeup()
            if wake is not None and (self._sleep_deadline is None or wake < self._sleep_deadline):
                self._sleep_scope.cancel()

    def _dispatch(self, start: StartAttempt) -> None:
        self._starts.append(start)
        if self._taking:
            self._taking -= 1  # the worker reporting its end takes it next
        elif self._parked:
            self._parked.pop().set()
        elif self._workers < self.planner.running and self._tg is not None:
            self._workers += 1
            self._tg.start_soon(self._worker, name="xtasks worker")

    # --- loops ------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        planner = self.planner
        clock = self.clock
        deadline: datetime | None = None
        with self._timer_scope:
            while True:
                # One sleep scope for every sleep until an earlier deadline cancels it:
                # not a scope per wake-up. It is set only while sleeping.
                with anyio.CancelScope() as sleep_scope:
                    while True:
                        now = clock.now()
                        if deadline is not None and deadline <= now:
                            # Woken for a deadline: how late? Two datetime ops per wake-up.
                            self.timer_lag = (now - deadline).total_seconds()
                        self.command(planner.advance, now)
                        deadline = planner.next_wakeup()
                        self._sleep_deadline = deadline
                        self._sleep_scope = sleep_scope
                        await clock.sleep_until(deadline)
                        self._sleep_scope = None
                self._sleep_scope = None

    async def _lease_loop(self) -> None:
        """Heartbeat our live runs and reap the runs of replicas that went silent.

        Every ``lease_ttl / 3`` seconds of real (store) time, whatever the scheduling
        clock says. A run of ours that another replica reaped is cancelled here: its
        result would be refused anyway.
        """
        store = self.store
        leased = self.recorder.leased
        interval = max(store.lease_ttl / 3, 0.01)
        failing = False
        with self._lease_scope:
            while True:
                try:
                    if leased:
                        gone = await store.renew_leases(self.replica, list(leased))
                        for run_id in gone:
                            # Another replica reaped it (we were silent too long): a
                            # running attempt stops, a run not started never starts.
                            leased.discard(run_id)
                            self._cancel_reasons[run_id] = "lost: its lease was reaped"
                            self.command(
                                self.planner.cancel_run,
                                run_id,
                                self.clock.now(),
                                "lost: its lease was reaped",
                            )
                    reaped = await store.reap_lost()
                    if reaped:
                        _log.warning(
                            "%d run(s) of silent replicas marked lost (%s), e.g. run %s of "
                            "task %r: %s",
                            len(reaped),
                            ", ".join(sorted({r.task for r in reaped})[:10]),
                            reaped[0].id,
                            reaped[0].task,
                            reaped[0].reason,
                        )
                    for record in reaped:
                        self.recorder.stored(record)
                        self.command(self.planner.recover_lost, record, self.clock.now())
                except StoreError as exc:
                    if not failing:  # once per outage, not every heartbeat
                        _log.warning("could not renew leases or reap lost runs: %s", exc)
                    failing = True
                    self.lease_error = (str(exc), self.recorder.writes_ok)
                else:
                    if failing:
                        _log.warning("leases are renewed again")
                    failing = False
                    self.lease_error = None
                await anyio.sleep(interval)

    async def _worker(self) -> None:
        while not await self._serve():
            pass  # a run's cancellation spent the scope: go on under a fresh one

    async def _serve(self) -> bool:
        """Execute attempts under one cancel scope, shared by the runs of this worker
        rather than opened per run. ``True`` once stopped; ``False`` when cancelling a
        run spent the scope (its exception ended it; or the run swallowed it, and the
        next checkpoint raised it again)."""
        starts = self._starts
        with anyio.CancelScope() as scope:
            while True:
                # Before each attempt: no worker hogs the loop with bodies that never
                # await, and the recorder, woken when the run was recorded running,
                # stores it so before its body runs.
                await anyio.lowlevel.checkpoint()
                while not starts:
                    if self._closed:
                        return True
                    parked = anyio.Event()
                    self._parked.append(parked)
                    await parked.wait()
                await self._execute(starts.popleft(), scope)
        return False

    async def _execute(self, start: StartAttempt, scope: anyio.CancelScope) -> None:
        """Execute one attempt in ``scope`` (its worker's) and report how it ended."""
        task, run_id = start.task, start.run_id
        if self._cancel_all or run_id in self._cancel_reasons:
            self._ended(run_id, cancelled=True)  # cancelled before it was picked up
            return
        result: Any = None
        error: BaseException | None = None
        self._executing[run_id] = start
        self._scopes[run_id] = scope
        try:
            executor = self._by_name[task.runs_on]
            if executor.reports_start:
                start.on_started = self._started
            if task.timeout is None:
                result = await executor.run(start)
            else:
                with anyio.move_on_after(task.timeout) as limit:
                    result = await executor.run(start)
                if limit.cancelled_caught:
                    error = RunTimeoutError(task.name, task.timeout)
        except Exception as exc:  # noqa: BLE001 - a task's failure is data, not a crash
            error = exc
        except BaseException as exc:
            # Cancellation by xtasks (this scope) or by whoever stops the scheduler (an
            # enclosing scope) goes on; anything else the task raised itself --
            # SystemExit, KeyboardInterrupt, its own CancelledError -- is its failure.
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                if scope.cancel_called:
                    self._ended(run_id, cancelled=True)
                    raise
                if anyio.current_effective_deadline() == -math.inf:
                    raise  # the scheduler is torn down: nothing is recorded any more
            error = exc
        self._ended(run_id, cancelled=scope.cancel_called, error=error, result=result)

    def _started(self, run_id: str, where: str | None) -> None:
        """``Attempt.started`` of an executor that reports starts (on the loop)."""
        if run_id in self._scopes:  # still executing
            self.command(self.planner.attempt_started, run_id, self.clock.now(), where)

    def _ended(
        self,
        run_id: str,
        *,
        cancelled: bool,
        error: BaseException | None = None,
        result: Any = None,
    ) -> None:
        """Report the end of ``run_id``'s attempt to the planner."""
        self._scopes.pop(run_id, None)
        self._executing.pop(run_id, None)
        planner = self.planner
        now = self.clock.now()
        self._taking = 1  # the first attempt this end lets start is this worker's next
        try:
            if cancelled:
                reason = self._cancel_reasons.pop(run_id, None) or self._cancel_all or "cancelled"
                self.command(planner.attempt_cancelled, run_id, now, reason)
            elif error is not None:
                self.command(planner.attempt_failed, run_id, now, ErrorInfo.from_exception(error))
            else:
                self.command(planner.attempt_succeeded, run_id, now, result)
        finally:
            self._taking = 0
        if self._idle is not None and not planner.running:
            self._idle.set()


def _describe(starts: Iterable[StartAttempt]) -> str:
    """A few attempts in words, for a log line."""
    shown = [f"{s.task.name!r} ({s.task.runs_on}, run {s.run_id})" for s in starts]
    more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
    return ", ".join(shown[:10]) + more
