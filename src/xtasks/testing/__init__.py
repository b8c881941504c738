"""Tools for testing code that uses xtasks: a fake clock that users advance by hand, a
store that fails on demand (:class:`FaultyStore`), and the contract suites for stores
(``check_store``) and executors (``check_executor``).

``FakeClock`` drives the scheduler's timers (fires, retry delays, jitter). Attempt
timeouts and the shutdown grace stay in the event loop's own time, so a test that uses
them takes that long in real time.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, final

import anyio

from ._contract import (
    STORE_CHECKS,
    StoreFactory,
    check_audit_trail,
    check_claim_exclusivity,
    check_claim_fires,
    check_close_idempotent,
    check_earlier_attempts,
    check_errors_are_store_errors,
    check_fencing,
    check_last_fire_monotonic,
    check_lease_expiry_and_reaping,
    check_lease_renewal,
    check_list_runs_order_and_paging,
    check_list_runs_task_change,
    check_reap_live_runs,
    check_round_trip,
    check_run_changes,
    check_run_executor_and_worker,
    check_run_totals,
    check_store,
    check_task_batches_and_anchor,
    check_task_state_changes,
    check_task_state_round_trip,
)
from ._executor_checks import (
    EXECUTOR_CHECKS,
    ExecutorFactory,
    check_executor,
    check_executor_cancel,
    check_executor_concurrency,
    check_executor_error,
    check_executor_result,
    check_executor_shutdown,
    check_executor_timeout,
)
from ._faults import FaultyStore

if TYPE_CHECKING:
    from ._stateful import StoreMachine

__all__ = [
    "EXECUTOR_CHECKS",
    "STORE_CHECKS",
    "ExecutorFactory",
    "FakeClock",
    "FaultyStore",
    "StoreFactory",
    "StoreMachine",
    "check_audit_trail",
    "check_claim_exclusivity",
    "check_claim_fires",
    "check_close_idempotent",
    "check_earlier_attempts",
    "check_errors_are_store_errors",
    "check_executor",
    "check_executor_cancel",
    "check_executor_concurrency",
    "check_executor_error",
    "check_executor_result",
    "check_executor_shutdown",
    "check_executor_timeout",
    "check_fencing",
    "check_last_fire_monotonic",
    "check_lease_expiry_and_reaping",
    "check_lease_renewal",
    "check_list_runs_order_and_paging",
    "check_list_runs_task_change",
    "check_reap_live_runs",
    "check_round_trip",
    "check_run_changes",
    "check_run_executor_and_worker",
    "check_run_totals",
    "check_store",
    "check_task_batches_and_anchor",
    "check_task_state_changes",
    "check_task_state_round_trip",
]


def __getattr__(name: str) -> object:
    # StoreMachine needs Hypothesis, a test-only dependency: import it on first use, so
    # that FakeClock and the store checks work without Hypothesis installed.
    if name == "StoreMachine":
        from ._stateful import StoreMachine

        return StoreMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@final
class FakeClock:
    """A clock that moves only when told to.

    ::

        clock = FakeClock()
        scheduler = Scheduler(clock=clock)
        ...
        async with scheduler:
            await clock.advance(3600)  # every fire of the hour happens, in order

    :param start: the initial time (timezone-aware); 2026-01-01 00:00 UTC by default.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start, e.g. tzinfo=UTC")
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._sleeps = 0  # sleep_until calls so far: tells when woken sleepers sleep again

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, deadline: datetime | None) -> None:
        self._sleeps += 1
        if deadline is not None and deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = None
        if deadline is not None:
            entry = (deadline, next(self._seq), event)
            heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if entry is not None and not event.is_set():  # cancelled: forget the deadline
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest time someone sleeps until, or ``None``."""
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float | timedelta) -> None:
        """Move time forward, stopping at every deadline on the way.

        At each stop the sleepers due are woken, and ``advance`` yields to the event loop
        until they sleep again (the scheduler has handled the fire and started its runs),
        so every fire in the interval happens at its own time, in order. Work in threads
        or processes is not waited for: wait on run handles or events for that.
        """
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward; got {seconds!r}")
        target = self._now + delta
        await self._settle(0)
        while self._sleepers and self._sleepers[0][0] <= target:
            self._now = max(self._now, self._sleepers[0][0])
            await self._settle(self._wake_due())
        self._now = target
        await self._settle(self._wake_due())

    async def jump(self) -> datetime | None:
        """Advance to the next deadline anyone sleeps until; return it (``None``: none)."""
        await self._settle(0)
        deadline = self.next_deadline
        if deadline is not None:
            await self.advance(max(deadline - self._now, timedelta(0)))
        return deadline

    def _wake_due(self) -> int:
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
            woken += 1
        return woken

    async def _settle(self, woken: int) -> None:
        """Yield until ``woken`` sleepers slept again, then a little more for their runs."""
        expected = self._sleeps + woken
        for _ in range(_MAX_ROUNDS):
            if self._sleeps >= expected:
                break
            await anyio.lowlevel.checkpoint()
        for _ in range(_EXTRA_ROUNDS):
            await anyio.lowlevel.checkpoint()


#: Event-loop rounds ``advance`` waits at most for woken sleepers to sleep again.
_MAX_ROUNDS = 10_000
#: Rounds given afterwards to the runs a fire started (tiny async jobs finish in them).
_EXTRA_ROUNDS = 20
