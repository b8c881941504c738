"""Executors beside the built-ins: registered with ``Scheduler(executors=[...])`` and
selected with ``Task(executor=...)``; an unknown or clashing name is refused, naming
what is installed; a remote executor's tasks need importable targets; and an executor
that reports starts keeps its runs ``queued`` until it says the work began."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests._log_lines import LogLines
from tests._virtual_time import in_virtual_time
from xtasks import Attempt, ConfigError, ErrorInfo, RunStatus, Scheduler, Task
from xtasks._seed import task_from_seed
from xtasks.abc import Executor, with_worker_traceback

if TYPE_CHECKING:
    from pathlib import Path

#: Long enough for any loaded machine; only reached when a test is broken.
_WAIT = 10.0


def double(x: int) -> int:
    """Module level: importable as ``tests.test_executor_adapters:double``."""
    return 2 * x


def ping() -> str:
    """Module level, no arguments: what the seed format can name."""
    return "pong"


class Inline(Executor):
    """Runs sync functions right on the loop, counting attempts and the most at once."""

    name = "inline"
    slots: int | None = 2

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.opened = self.closed = 0
        self.gate: anyio.Event | None = None
        self.now = self.most = 0
        self.full = anyio.Event()  # set once ``slots`` attempts run at once

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def run(self, attempt: Attempt) -> Any:
        self.attempts.append(attempt)
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now == self.slots:
            self.full.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            return attempt.task.func(*attempt.args, **attempt.kwargs)
        finally:
            self.now -= 1


class Remote(Inline):
    """Like a remote worker fleet: needs targets, reports the start when ``begin`` is set."""

    name = "remote"
    slots = None
    needs_target = True
    reports_start = True

    def __init__(self) -> None:
        super().__init__()
        self.entered = anyio.Event()
        self.begin = anyio.Event()
        self.reported = anyio.Event()

    async def run(self, attempt: Attempt) -> Any:
        self.entered.set()
        await self.begin.wait()
        attempt.started("worker-1")
        attempt.started("worker-1")  # a second report changes nothing
        self.reported.set()
        return await super().run(attempt)


@pytest.mark.anyio
async def test_a_task_runs_on_the_executor_it_names_within_its_slots() -> None:
    inline = Inline()
    inline.gate = anyio.Event()
    scheduler = Scheduler(plugins=False, executors=[inline], shutdown_grace=1)
    assert scheduler.executors["inline"] is inline
    assert {"async", "sync", "process", "inline"} <= set(scheduler.executors)
    scheduler.add(Task("twice", double, args=(21,), executor="inline", overlap="allow"))
    async with scheduler:
        assert inline.opened == 1
        handles = [await scheduler.trigger("twice") for _ in range(3)]
        with anyio.fail_after(_WAIT):
            await inline.full.wait()
        assert inline.now == 2  # the third waits for a slot
        inline.gate.set()
        with anyio.fail_after(_WAIT):
            records = [await handle.wait() for handle in handles]
    assert [r.status for r in records] == [RunStatus.SUCCEEDED] * 3
    assert [r.result for r in records] == [42] * 3
    assert inline.most == 2
    assert [a.number for a in inline.attempts] == [1, 1, 1]
    assert inline.closed == 1


def test_an_unknown_executor_is_refused_naming_the_installed_ones() -> None:
    scheduler = Scheduler(plugins=False, executors=[Inline()])
    with pytest.raises(ConfigError, match=r"task 'x' asks for executor 'celery'") as info:
        scheduler.add(Task("x", double, args=(1,), executor="celery"))
    assert "installed: async, inline, process, sync" in str(info.value)


def test_two_executors_with_one_name_are_refused_naming_both_origins() -> None:
    class Clash(Inline):
        name = "sync"

    with pytest.raises(ConfigError, match=r"two executors are named 'sync'") as info:
        Scheduler(plugins=False, executors=[Clash()])
    assert "xtasks (built-in)" in str(info.value)
    assert "Scheduler(executors=...)" in str(info.value)


@pytest.mark.parametrize("name", ["", "1st", "with space", 3])
def test_an_executor_name_must_be_an_identifier(name: object) -> None:
    with pytest.raises(ConfigError, match="executor"):
        Task("x", double, args=(1,), executor=name)  # type: ignore[arg-type]


def test_a_remote_executor_needs_an_importable_target() -> None:
    scheduler = Scheduler(plugins=False, executors=[Remote()])

    def local(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match=r"give func as that name, a string"):
        scheduler.add(Task("local", local, args=(1,), executor="remote"))
    scheduler.add(Task("named", f"{__name__}:double", args=(1,), executor="remote"))


def test_a_remote_executor_takes_names_this_process_cannot_import() -> None:
    """A Celery task's name, or a module only the workers have: not imported here, the
    workers find it; a local executor refuses such a task, saying it was not imported."""
    scheduler = Scheduler(plugins=False, executors=[Remote(), Inline()])
    dotted = scheduler.add(Task("dotted", "myapp.tasks.rapport", args=(1,), executor="remote"))
    assert dotted.target == "myapp.tasks.rapport" and dotted.runs_on == "remote"
    elsewhere = Task("elsewhere", "not_installed_here.jobs:nightly", executor="remote")
    assert scheduler.add(elsewhere).target == "not_installed_here.jobs:nightly"
    with pytest.raises(ConfigError, match=r"not imported in this process.*No module named"):
        elsewhere.func()
    with pytest.raises(ConfigError, match=r"calls its function in this process") as info:
        scheduler.add(Task("local", "not_installed_here.jobs:nightly", executor="inline"))
    assert "give it as 'package.module:function'" in str(info.value)
    # The built-ins still import at once: a typo is caught where it is made.
    with pytest.raises(ConfigError, match=r"cannot import module 'not_installed_here.jobs'"):
        Task("now", "not_installed_here.jobs:nightly", executor="sync")
    with pytest.raises(ConfigError, match=r"add the ':'"):
        Task("now", "myapp.tasks.rapport")


def test_an_executor_may_refuse_a_task_as_it_is_added() -> None:
    class Picky(Inline):
        name = "picky"

        def check(self, task: Task) -> None:
            if task.args:
                raise ConfigError(f"task {task.name!r}: picky takes no arguments", task=task.name)

    scheduler = Scheduler(plugins=False, executors=[Picky()])
    scheduler.add(Task("bare", ping, executor="picky"))
    with pytest.raises(ConfigError, match=r"task 'args': picky takes no arguments"):
        scheduler.add(Task("args", double, args=(1,), executor="picky"))


@pytest.mark.anyio
async def test_an_executors_background_loop_runs_while_the_scheduler_does() -> None:
    """``serve`` starts before any run and ends after the last; one that raises is logged
    and started again, and the scheduler goes on."""

    class Serving(Inline):
        name = "serving"

        def __init__(self) -> None:
            super().__init__()
            self.serving = anyio.Event()
            self.starts = 0
            self.ended = False

        async def serve(self) -> None:
            self.starts += 1
            if self.starts == 1:
                raise RuntimeError("lost the connection")
            self.serving.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.ended = True

    serving = Serving()
    scheduler = Scheduler(plugins=False, executors=[serving], shutdown_grace=1)
    scheduler.add(Task("twice", double, args=(2,), executor="serving"))
    async with scheduler:
        with anyio.fail_after(_WAIT):
            await serving.serving.wait()
        assert not serving.ended
        record = await (await scheduler.trigger("twice")).wait()
        assert record.status is RunStatus.SUCCEEDED and record.result == 4
    assert serving.starts == 2 and serving.ended and serving.closed == 1


def test_an_error_from_a_worker_shows_the_workers_traceback() -> None:
    text = 'Traceback (most recent call last):\n  File "/srv/app/jobs.py", line 3, in run\n'
    error = with_worker_traceback(ValueError("boom"), text + "ValueError: boom\n")
    info = ErrorInfo.from_exception(error)
    assert info.type == "ValueError" and info.message == "boom"
    assert 'File "/srv/app/jobs.py", line 3, in run' in info.traceback
    assert "test_executor_adapters" not in info.traceback  # no frame of this process


@pytest.mark.anyio
async def test_a_run_stays_queued_until_its_executor_reports_the_start() -> None:
    remote = Remote()
    scheduler = Scheduler(plugins=False, executors=[remote], shutdown_grace=1)
    scheduler.add(Task("far", f"{__name__}:double", args=(4,), executor="remote"))
    async with scheduler:
        handle = await scheduler.trigger("far")
        with anyio.fail_after(_WAIT):
            await remote.entered.wait()
        before = await scheduler.get_run(handle.id)
        assert before is not None
        assert before.status is RunStatus.QUEUED and before.started_at is None
        remote.gate = anyio.Event()
        remote.begin.set()
        with anyio.fail_after(_WAIT):
            await remote.reported.wait()
        during = await scheduler.get_run(handle.id)
        assert during is not None
        assert during.status is RunStatus.RUNNING and during.started_at is not None
        remote.gate.set()
        with anyio.fail_after(_WAIT):
            record = await handle.wait()
    assert record.status is RunStatus.SUCCEEDED and record.result == 8
    stored = await scheduler.get_run(handle.id)
    assert stored is not None and stored.status is RunStatus.SUCCEEDED
    assert stored.started_at == during.started_at


class Reporting(Inline):
    """Reports each start at once, on a worker named after the attempt."""

    name = "reporting"
    reports_start = True

    async def run(self, attempt: Attempt) -> Any:
        attempt.started(f"worker-{attempt.number}")
        return await super().run(attempt)


_FAILS_LEFT: list[int] = []


def fails_once() -> str:
    if _FAILS_LEFT:
        _FAILS_LEFT.pop()
        raise RuntimeError("first attempt fails")
    return "ok"


@pytest.mark.anyio
async def test_a_retry_sent_to_a_reporting_executor_is_logged_failed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The retry's attempt, sent and not started yet, is ``queued`` with the error before
    it: the run log must not count it as a second failure."""
    _FAILS_LEFT[:] = [1]
    scheduler = Scheduler(plugins=False, executors=[Reporting()], shutdown_grace=1)
    scheduler.add(Task("twice", fails_once, executor="reporting", max_retries=1))
    with caplog.at_level("WARNING", logger="xtasks.runs"):
        async with scheduler:
            record = await scheduler.run("twice")
    assert record.status is RunStatus.SUCCEEDED and record.attempts == 2
    assert record.worker == "worker-2" and record.executor == "reporting"
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "attempt 1/2 failed" in failed[0], failed


def test_the_seed_and_yaml_formats_select_an_executor(tmp_path: Path) -> None:
    seeded = task_from_seed(
        {"name": "s", "function": f"{__name__}:ping", "executor": "remote"}, origin="test"
    )
    assert seeded.executor == "remote" and seeded.runs_on == "remote"
    config = tmp_path / "xtasks.yaml"
    config.write_text("tasks:\n  y:\n    executor: remote\n  z:\n    executor: nowhere\n")
    scheduler = Scheduler(plugins=False, config=config, executors=[Remote()])
    assert scheduler.add(Task("y", f"{__name__}:double", args=(1,))).runs_on == "remote"
    with pytest.raises(ConfigError, match=r"task 'z' asks for executor 'nowhere'"):
        scheduler.add(Task("z", double, args=(1,)))


class Stubborn(Executor):
    """Like a call that cannot be interrupted: cancelled, it goes on until ``release``."""

    name = "stubborn"
    slots: int | None = None

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def run(self, attempt: Attempt) -> Any:
        self.entered.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_WAIT):
            await self.release.wait()
        return attempt.task.func()


class ReleaseWhenWarned(LogLines):
    """Keeps xtasks' warnings; the one saying shutdown stops waiting releases ``stubborn``."""

    def __init__(self, stubborn: Stubborn) -> None:
        super().__init__(logging.WARNING)
        self.stubborn = stubborn

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.getMessage().startswith("not waiting"):
            self.stubborn.release.set()


@pytest.mark.anyio
async def test_shutdown_names_the_runs_past_its_grace_and_does_not_wait_for_a_stuck_one() -> None:
    stubborn = Stubborn()
    scheduler = Scheduler(plugins=False, executors=[stubborn], shutdown_grace=0.1)
    scheduler.add(Task("stuck", ping, executor="stubborn"))
    scheduler.add(Task("done", ping))
    warnings = ReleaseWhenWarned(stubborn)
    logger = logging.getLogger("xtasks")
    logger.addHandler(warnings)
    try:
        async with scheduler:
            with anyio.fail_after(_WAIT):  # a run that ended before: not named below
                assert (await (await scheduler.trigger("done")).wait()).result == "pong"
            handle = await scheduler.trigger("stuck")
            with anyio.fail_after(_WAIT):
                await stubborn.entered.wait()
    finally:
        logger.removeHandler(warnings)
    # The operator learns which runs outlived the grace, then which ignored their
    # cancellation: shutdown went on without them (the release came from that warning).
    where = f"'stuck' (stubborn, run {handle.id})"
    abandoned = "not waiting for 1 cancelled run(s) that have not stopped (a sync call "
    abandoned += f"cannot be interrupted; its thread finishes in the background): {where}"
    assert warnings.messages[:2] == [
        f"shutdown grace (0.1 s) is over; cancelling 1 run(s) still going: {where}",
        abandoned,
    ]
    # Released by that warning, the run ends while the recorder writes its last records,
    # or after it stopped (shutdown said it would not wait; the loop's order decides): it
    # is stored cancelled by the shutdown, or left running for the next start to reap as
    # lost once its lease runs out. Never anything else, and never gone.
    await scheduler.store.open()  # closed by the scheduler's exit; the data stays
    stored = await scheduler.store.get_run(handle.id)
    assert stored is not None
    assert (stored.status, stored.reason) in {
        (RunStatus.CANCELLED, "shutdown"),
        (RunStatus.RUNNING, None),
    }


@pytest.mark.anyio
@in_virtual_time()
async def test_shutdown_waits_its_grace_then_one_second_for_cancelled_runs_to_stop(
    anyio_backend: object,
) -> None:
    """Virtual time: the grace (0.1 s here), then at least a second for what was
    cancelled to stop, then on without it."""
    stubborn = Stubborn()
    scheduler = Scheduler(plugins=False, executors=[stubborn], shutdown_grace=0.1)
    scheduler.add(Task("stuck", ping, executor="stubborn"))
    warnings = ReleaseWhenWarned(stubborn)
    logger = logging.getLogger("xtasks")
    logger.addHandler(warnings)
    try:
        async with scheduler:
            await scheduler.trigger("stuck")
            with anyio.fail_after(_WAIT):
                await stubborn.entered.wait()
            leaving = anyio.current_time()
    finally:
        logger.removeHandler(warnings)
    grace_over, not_waiting = warnings.times[:2]
    assert round(grace_over - leaving, 6) == 0.1
    assert round(not_waiting - grace_over, 6) == 1.0
