"""The event-loop lag monitor alone: a blocked loop is measured and its culprit named."""

from __future__ import annotations

import logging
import threading
import time

import anyio
import anyio.lowlevel
import pytest

from xtasks import RunStatus, Scheduler, Task
from xtasks._loop_monitor import LoopMonitor

pytestmark = pytest.mark.anyio

#: Generous bound for what should take well under a second.
WAIT = 10.0


class _Resumed(logging.Handler):
    """Sets an event when the monitor logs that the loop runs again (logged on the loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "running again" in record.getMessage():
            self.event.set()


async def _started(monitor: LoopMonitor) -> None:
    """Wait until the monitor's sleeper measures (trio starts a batch in random order)."""
    with anyio.fail_after(WAIT):
        while not monitor.running:
            await anyio.lowlevel.checkpoint()


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "xtasks-loop-watchdog"]


async def block_the_loop() -> None:
    time.sleep(1.5)  # noqa: ASYNC251 - blocks the loop on purpose: what the monitor must reveal


async def test_a_blocked_loop_is_measured_and_the_blocking_task_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xtasks.loop")
    resumed = _Resumed()
    logging.getLogger("xtasks.loop").addHandler(resumed)
    monitor = LoopMonitor(threshold=0.5, interval=0.1)
    try:
        async with anyio.create_task_group() as tg:
            monitor.start(tg)
            await _started(monitor)
            tg.start_soon(block_the_loop)
            with anyio.fail_after(WAIT):
                await resumed.event.wait()
            assert monitor.lag >= 1.0
            assert monitor.max_lag >= monitor.lag
            monitor.stop()
    finally:
        logging.getLogger("xtasks.loop").removeHandler(resumed)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per episode
    message = warnings[0].getMessage()
    assert "event loop blocked" in message
    # The innermost user frame: the blocking task's function, its file and line.
    culprit = message.split(" by: ", 1)[1].split(" <- ")[0]
    assert culprit.startswith("block_the_loop (")
    assert f"{__file__}:" in culprit
    assert not monitor.running


async def test_an_idle_loop_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xtasks.loop")
    # A threshold far above what a loaded machine's scheduling adds to an idle loop.
    monitor = LoopMonitor(threshold=3.0, interval=0.05)
    async with anyio.create_task_group() as tg:
        monitor.start(tg)
        await _started(monitor)
        await anyio.sleep(0.5)  # the scenario: ten idle wake-ups of the monitor
        assert 0.0 <= monitor.lag < 3.0
        assert 0.0 <= monitor.max_lag < 3.0
        monitor.stop()
    assert [r.getMessage() for r in caplog.records] == []


async def test_max_lag_is_over_a_window_and_lag_is_the_latest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xtasks.loop")
    resumed = _Resumed()
    logging.getLogger("xtasks.loop").addHandler(resumed)
    # Scaled so that a loaded machine's own lag (well under a second) cannot pass for
    # the block, nor keep the window from forgetting it.
    monitor = LoopMonitor(threshold=1.0, interval=0.05, window=1.0)
    try:
        async with anyio.create_task_group() as tg:
            monitor.start(tg)
            await _started(monitor)
            time.sleep(1.5)  # noqa: ASYNC251 - blocks the loop on purpose
            with anyio.fail_after(WAIT):
                await resumed.event.wait()
            assert monitor.max_lag >= 1.2
            await anyio.sleep(1.5)  # the scenario: the block leaves the 1 s window
            assert monitor.lag < 1.0
            assert monitor.max_lag < 1.0
            monitor.stop()
    finally:
        logging.getLogger("xtasks.loop").removeHandler(resumed)


async def test_the_watchdog_thread_lives_only_while_the_monitor_runs() -> None:
    before = set(_watchdogs())
    monitor = LoopMonitor()
    async with anyio.create_task_group() as tg:
        monitor.start(tg)
        await _started(monitor)
        mine = [t for t in _watchdogs() if t not in before]
        assert len(mine) == 1 and mine[0].daemon
        tg.cancel_scope.cancel()  # no stop(): leaving the task group is enough
    mine[0].join(WAIT)
    assert not mine[0].is_alive()
    assert not monitor.running


async def test_a_monitor_starts_once_and_takes_positive_seconds() -> None:
    for bad in ({"threshold": 0}, {"interval": -1.0}, {"window": 0.0}):
        with pytest.raises(ValueError, match="positive seconds"):
            LoopMonitor(**bad)
    monitor = LoopMonitor()
    async with anyio.create_task_group() as tg:
        monitor.start(tg)
        with pytest.raises(RuntimeError, match="already started"):
            monitor.start(tg)
        monitor.stop()
    assert not monitor.running


async def test_a_running_scheduler_reports_its_loop_lag_in_stats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xtasks.loop")
    resumed = _Resumed()
    logging.getLogger("xtasks.loop").addHandler(resumed)
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("hog", block_the_loop))
    assert (scheduler.stats().loop_lag, scheduler.stats().loop_lag_max) == (0.0, 0.0)
    try:
        async with scheduler:
            assert scheduler._engine is not None  # the monitor the scheduler owns
            await _started(scheduler._engine.loop)
            with anyio.fail_after(WAIT):
                record = await scheduler.run("hog")
                await resumed.event.wait()  # the monitor woke up after the block
            assert record.status is RunStatus.SUCCEEDED
            stats = scheduler.stats()
            assert stats.loop_lag_max >= 1.0
            assert 0.0 <= stats.loop_lag <= stats.loop_lag_max
    finally:
        logging.getLogger("xtasks.loop").removeHandler(resumed)
    assert (scheduler.stats().loop_lag, scheduler.stats().loop_lag_max) == (0.0, 0.0)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"by: block_the_loop ({__file__}:" in warning
