"""The run log: failed attempts, final failures, recoveries, skips and misses, logged as
they happen on ``xtasks.runs``; and a handler that shows them when nothing else would
(plain ``uvicorn app:app``), never twice when the application configured logging."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests._lines import Lines
from xtasks import RunCause, RunRecord, RunStatus, Scheduler, Task
from xtasks._run_log import RUN_LOGGER, RunLog, attach, ensure_log_handler
from xtasks._runs import SHORT_ERROR_CHARS
from xtasks.events import RunChanged
from xtasks.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT = 20.0


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, message) of every run-log line so far."""
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == RUN_LOGGER]


async def until(events: Any, check: Callable[[RunRecord], bool]) -> RunRecord:
    with anyio.fail_after(TIMEOUT):
        async for event in events:
            if isinstance(event, RunChanged) and check(event.record):
                return event.record
    raise AssertionError("the event stream ended")


# --- what is logged, from a running scheduler --------------------------------------------


@pytest.mark.anyio
async def test_each_failed_attempt_then_the_failure_then_the_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")
    clock = FakeClock(T0)
    broken = True

    async def sync_donnees() -> str:
        if broken:
            raise ConnectionError("db.example.com:5432 refused the connection")
        return "ok"

    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False, clock=clock)
    scheduler.add(
        Task("sync_donnees", sync_donnees, max_retries=2, retry_delay=60, retry_backoff=2)
    )
    attach(scheduler)  # what the scheduler does as it starts
    async with scheduler, scheduler.events(types=RunChanged) as events:
        handle = await scheduler.trigger("sync_donnees")
        await until(events, lambda r: r.status is RunStatus.QUEUED and r.attempts == 1)
        assert lines(caplog) == [
            (
                "WARNING",
                (
                    "task 'sync_donnees' attempt 1/3 failed: ConnectionError: "
                    "db.example.com:5432 refused the connection; "
                    f"retry in 60 s (at 2026-01-01 00:01:00 UTC) [run {handle.id}]"
                ),
            )
        ]
        await clock.advance(60)
        await until(events, lambda r: r.status is RunStatus.QUEUED and r.attempts == 2)
        assert lines(caplog)[-1][1].startswith("task 'sync_donnees' attempt 2/3 failed: ")
        assert lines(caplog)[-1][1].endswith(
            f"; retry in 2 min (at 2026-01-01 00:03:00 UTC) [run {handle.id}]"
        )
        await clock.advance(120)
        record = await handle.wait()
        assert record.status is RunStatus.FAILED
        assert lines(caplog)[-1] == (
            "ERROR",
            (
                "task 'sync_donnees' failed after 3 attempt(s): ConnectionError: "
                f"db.example.com:5432 refused the connection [run {handle.id}]"
            ),
        )
        broken = False
        again = await scheduler.run("sync_donnees")
        assert again.status is RunStatus.SUCCEEDED
    assert lines(caplog)[-1] == (
        "INFO",
        f"task 'sync_donnees' succeeded after 1 failed run(s): recovered [run {again.id}]",
    )
    assert len(lines(caplog)) == 4  # nothing for the runs going to plan


@pytest.mark.anyio
async def test_a_retry_that_succeeds_and_a_submitted_task_say_their_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")
    calls = 0

    def flaky() -> int:  # sync: runs in a thread
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("upstream slow")
        return calls

    scheduler = Scheduler(plugins=False)
    attach(scheduler)
    async with scheduler:
        handle = await scheduler.submit(Task("mail", flaky, max_retries=3, retry_delay=0.01))
        record = await handle.wait()
    assert record.status is RunStatus.SUCCEEDED
    failed, succeeded = lines(caplog)
    assert failed[0] == "WARNING"
    assert failed[1].startswith("task 'mail' attempt 1/4 failed: TimeoutError: upstream slow;")
    assert re.search(r"; retry in \d\.\d s \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", failed[1])
    assert succeeded == ("INFO", f"task 'mail' succeeded on attempt 2/4 [run {record.id}]")


@pytest.mark.anyio
async def test_skips_say_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")
    gate = anyio.Event()

    async def slow() -> None:
        await gate.wait()

    async def broken() -> None:
        raise ValueError("no data")

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("slow", slow))
    scheduler.add(Task("extract", broken))
    scheduler.add(Task("report", slow, depends_on=["extract"]))
    attach(scheduler)
    async with scheduler:
        first = await scheduler.trigger("slow")
        second = await (await scheduler.trigger("slow")).wait()
        gate.set()
        await first.wait()
        report = await scheduler.run("report")
    assert second.status is RunStatus.SKIPPED
    assert report.status is RunStatus.SKIPPED
    logged = lines(caplog)
    assert (
        "INFO",
        f"task 'slow' skipped: overlap: a run of it is still going [run {second.id}]",
    ) in logged
    assert ("INFO", f"task 'report' skipped: upstream_failed: extract [run {report.id}]") in logged
    assert any(
        level == "ERROR" and "'extract' failed after 1 attempt(s)" in m for level, m in logged
    )


def test_missed_fires_are_logged_with_their_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")
    reason = "missed 41 fire(s) from 2026-01-01T00:00:01+00:00 to ... (catch_up=once)"
    record = RunRecord(
        id="r1",
        task="tick",
        status=RunStatus.MISSED,
        cause=RunCause.SCHEDULE,
        scheduled_at=T0,
        finished_at=T0,
        reason=reason,
    )
    RunLog(Scheduler(plugins=False))(RunChanged(record))
    assert lines(caplog) == [("INFO", f"task 'tick' missed: {reason} [run r1]")]
    [logged] = [r for r in caplog.records if r.name == RUN_LOGGER]
    fields = (getattr(logged, "xtasks_task", None), getattr(logged, "xtasks_run_id", None))
    assert fields == ("tick", "r1")  # for structured logs, without parsing the line


@pytest.mark.anyio
async def test_a_huge_error_message_gives_a_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")

    async def verbose() -> None:
        raise RuntimeError("x" * 1_000_000)

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("verbose", verbose, max_retries=1, retry_delay=0))
    attach(scheduler)
    async with scheduler:
        record = await scheduler.run("verbose")
    assert record.error is not None and len(record.error.message) > SHORT_ERROR_CHARS  # history
    assert [level for level, _ in lines(caplog)] == ["WARNING", "ERROR"]
    for _, message in lines(caplog):
        assert "characters cut]" in message
        assert len(message) < SHORT_ERROR_CHARS + 200


@pytest.mark.anyio
async def test_attaching_twice_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xtasks")

    async def boom() -> None:
        raise ValueError("once")

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("boom", boom))
    attach(scheduler)
    attach(scheduler)  # a second start attaches again: still one subscriber
    async with scheduler:
        await scheduler.run("boom")
    assert len(lines(caplog)) == 1


# --- the fallback handler ---------------------------------------------------------------


def isolated(name: str) -> tuple[logging.Logger, logging.Logger]:
    """A root and an ``xtasks``-like logger under it, outside the process's hierarchy."""
    root = logging.Logger(f"{name}-root")  # noqa: LOG001 - not in the process's tree
    logger = logging.Logger(f"{name}-xtasks")  # noqa: LOG001
    logger.parent = root
    return root, logger


def test_no_logging_configured_gets_a_timestamped_handler_at_info() -> None:
    _root, logger = isolated("bare")
    handler = ensure_log_handler(logger)
    assert handler is not None and logger.handlers == [handler]
    assert logger.getEffectiveLevel() == logging.INFO
    assert ensure_log_handler(logger) is None  # once
    assert handler.formatter is not None
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "hello", (), None)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bare-xtasks: hello",
        handler.formatter.format(record),
    )


def test_configured_logging_is_left_alone() -> None:
    root, logger = isolated("configured")
    root.addHandler(logging.NullHandler())
    assert ensure_log_handler(logger) is None
    assert logger.handlers == [] and logger.level == logging.NOTSET


def test_a_level_the_application_set_stays() -> None:
    _root, logger = isolated("levelled")
    logger.setLevel(logging.ERROR)
    assert ensure_log_handler(logger) is not None
    assert logger.level == logging.ERROR


def test_logging_configured_later_takes_over_and_nothing_is_written_twice() -> None:
    root, logger = isolated("later")
    handler = ensure_log_handler(logger)
    assert handler is not None
    seen: list[str] = []
    app_handler = logging.Handler()
    app_handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    root.addHandler(app_handler)  # the application configures logging after start
    logger.warning("after")
    assert seen == ["after"]
    assert logger.handlers == []  # retired
    assert logger.level == logging.NOTSET  # its level given back: the application's rules


# --- in real processes ------------------------------------------------------------------

FAILING_APP = """
    from datetime import UTC, datetime

    from fastapi import FastAPI

    from xtasks import At, Scheduler, Task

    async def sync_donnees() -> None:
        raise ConnectionError("db.example.com:5432 refused the connection")

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("sync_donnees", sync_donnees, trigger=At(datetime.now(UTC)),
                       max_retries=1, retry_delay=0.2))
    app = FastAPI(lifespan=scheduler.lifespan)
"""

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class Stderr:
    """A process's stderr, read line by line in a thread; waits are on lines, not time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stderr is not None
        self.lines = Lines(proc.stderr, TIMEOUT)

    def wait_for(self, pattern: str) -> str:
        """The next stderr line ``pattern`` matches (``re.search``)."""
        return self.lines.wait_for(pattern).string


def start(tmp_path: Path, *args: str) -> Stderr:
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("XTASKS_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Stderr(proc)


def stop(stderr: Stderr) -> None:
    proc = stderr.proc
    proc.terminate()
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        stderr.lines.pump.join(timeout=TIMEOUT)  # it read to the end: the pipe can close
        assert proc.stderr is not None
        proc.stderr.close()


def test_plain_uvicorn_shows_the_failed_attempts_with_their_time(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(textwrap.dedent(FAILING_APP))
    args = ("-m", "uvicorn", "failing_app:app", "--port", "0", "--lifespan", "on")
    stderr = start(tmp_path, *args)
    try:
        attempt = stderr.wait_for(r"attempt 1/2 failed")
        final = stderr.wait_for(r"failed after 2 attempt")
    finally:
        stop(stderr)
    assert re.fullmatch(
        rf"{STAMP} WARNING xtasks\.runs: task 'sync_donnees' attempt 1/2 failed: "
        r"ConnectionError: db\.example\.com:5432 refused the connection; retry in 0\.\d s "
        r"\(at .* UTC\) \[run \w+\]",
        attempt,
    )
    assert re.fullmatch(
        rf"{STAMP} ERROR xtasks\.runs: task 'sync_donnees' failed after 2 attempt\(s\): "
        r"ConnectionError: .* \[run \w+\]",
        final,
    )


CONFIGURED_SCRIPT = """
    import logging

    import anyio

    from xtasks import Scheduler, Task

    async def sync_donnees() -> None:
        raise ConnectionError("refused")

    async def main() -> None:
        scheduler = Scheduler(plugins=False)
        scheduler.add(Task("sync_donnees", sync_donnees))
        async with scheduler:
            await scheduler.run("sync_donnees")

    logging.basicConfig(format="APP %(levelname)s %(name)s: %(message)s")
    anyio.run(main)
"""


def test_an_application_logging_config_is_used_alone(tmp_path: Path) -> None:
    (tmp_path / "configured.py").write_text(textwrap.dedent(CONFIGURED_SCRIPT))
    result = subprocess.run(
        [sys.executable, "configured.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    failures = [line for line in result.stderr.splitlines() if "failed after" in line]
    assert failures == [
        "APP ERROR xtasks.runs: task 'sync_donnees' failed after 1 attempt(s): "
        + failures[0].split("attempt(s): ", 1)[1]
    ]
    assert "ConnectionError: refused" in failures[0]
