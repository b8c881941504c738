"""Alert delivery: channels selected per task in YAML, the last success, draining at exit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import xtasks
from xtasks import ConfigFileError, RunStatus, Scheduler, Task
from xtasks.abc import Alerter
from xtasks.events import Alert, AlertKind

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


class Inbox(Alerter):
    """Records what it is sent, and lets a test wait for a number of alerts."""

    def __init__(self, name: str = "code", delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.alerts: list[Alert] = []
        self.changed = anyio.Event()

    async def send(self, alert: Alert) -> None:
        if self.delay:
            await anyio.sleep(self.delay)  # a slow mail server
        self.alerts.append(alert)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.alerts) < count:
                await self.changed.wait()


class InboxPlugin:
    """A plugin object contributing ``kind: inbox``; keeps the inboxes it built by name."""

    def __init__(self) -> None:
        self.built: dict[str, Inbox] = {}

    @xtasks.hookimpl
    def xtasks_add_alerters(self, register: Any) -> None:
        def build(label: str) -> Inbox:
            self.built[label] = Inbox(label)
            return self.built[label]

        register("inbox", build)


async def failing() -> None:
    raise RuntimeError("the disk is full")


CHANNELS = """\
alerts:
  - kind: inbox
    name: ops
    label: ops
  - kind: inbox
    name: devs
    label: devs
tasks:
  billing:
    alert_channels: [ops]
"""


async def test_a_task_selecting_channels_alerts_only_those_and_the_code_alerters(
    tmp_path: Path,
) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(CHANNELS)
    plugin = InboxPlugin()
    in_code = Inbox()
    scheduler = Scheduler(plugins=[plugin], config=config, alerters=[in_code])
    scheduler.add(Task("billing", failing))
    scheduler.add(Task("reports", failing))
    async with scheduler:
        for name in ("billing", "reports"):
            record = await (await scheduler.trigger(name)).wait()
            assert record.status is RunStatus.FAILED
        await in_code.wait_for(2)
        await plugin.built["devs"].wait_for(1)
        await plugin.built["ops"].wait_for(2)
    assert sorted(a.task for a in in_code.alerts) == ["billing", "reports"]
    assert sorted(a.task for a in plugin.built["ops"].alerts) == ["billing", "reports"]
    assert [a.task for a in plugin.built["devs"].alerts] == ["reports"]  # billing chose ops


async def test_an_unknown_channel_name_is_an_error_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(CHANNELS.replace("[ops]", "[ops, opps]"))
    scheduler = Scheduler(plugins=[InboxPlugin()], config=config)
    scheduler.add(Task("billing", failing))
    [problem] = scheduler.check()
    assert isinstance(problem, ConfigFileError)
    assert problem.path == str(config) and problem.key == "tasks.billing.alert_channels"
    assert problem.line == 10
    assert "'opps'" in str(problem) and "did you mean 'ops'" in str(problem)
    assert "the channels are: ops, devs" in str(problem)
    with pytest.raises(ConfigFileError, match="opps"):
        async with scheduler:
            pass


async def test_a_failing_alert_tells_when_the_task_last_succeeded() -> None:
    inbox = Inbox()
    outcome = {"fail": False}

    async def flaky() -> None:
        if outcome["fail"]:
            raise RuntimeError("upstream timed out")

    scheduler = Scheduler(plugins=False, alerters=[inbox])
    scheduler.add(Task("sync", flaky))
    async with scheduler:
        success = await (await scheduler.trigger("sync")).wait()
        assert success.status is RunStatus.SUCCEEDED
        outcome["fail"] = True
        await (await scheduler.trigger("sync")).wait()
        await inbox.wait_for(1)
    [alert] = inbox.alerts
    assert alert.kind is AlertKind.FAILING
    assert alert.last_success == success.finished_at


async def test_subscribers_see_each_alert_as_an_event() -> None:
    inbox = Inbox()
    scheduler = Scheduler(plugins=False, alerters=[inbox])
    scheduler.add(Task("broken", failing, alert_after=2))
    async with scheduler, scheduler.events() as events:
        for _ in range(3):  # one failing alert for the streak, not one per failure
            await (await scheduler.trigger("broken")).wait()
        seen: list[Alert] = []
        with anyio.fail_after(10):
            async for event in events:
                if isinstance(event, Alert):
                    seen.append(event)
                    break
        await inbox.wait_for(1)
    [alert] = seen
    assert alert.kind is AlertKind.FAILING and alert.task == "broken"
    assert alert.consecutive_failures == 2 and alert == inbox.alerts[0]


async def test_a_task_that_never_succeeded_has_no_last_success() -> None:
    inbox = Inbox()
    scheduler = Scheduler(plugins=False, alerters=[inbox])
    scheduler.add(Task("broken", failing))
    async with scheduler:
        await (await scheduler.trigger("broken")).wait()
        await inbox.wait_for(1)
    assert inbox.alerts[0].last_success is None


async def test_alerts_queued_at_exit_are_still_delivered() -> None:
    slow = Inbox(delay=0.3)
    scheduler = Scheduler(plugins=False, alerters=[slow], shutdown_grace=5)
    scheduler.add(Task("broken", failing))
    async with scheduler:
        await (await scheduler.trigger("broken")).wait()
        assert slow.alerts == []  # the alert is still on its way when we leave
    assert [a.kind for a in slow.alerts] == [AlertKind.FAILING]


async def test_draining_at_exit_is_bounded_by_the_shutdown_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hung = Inbox(delay=3600)
    scheduler = Scheduler(plugins=False, alerters=[hung], shutdown_grace=0.2)
    scheduler.add(Task("broken", failing))
    with anyio.fail_after(10):  # not the alerter's hour, nor its 30 s timeout
        async with scheduler:
            await (await scheduler.trigger("broken")).wait()
    assert hung.alerts == []
    # a grace under a second still gives alerts a whole second, and says they were dropped
    said = [r.getMessage() for r in caplog.records if r.name == "xtasks"]
    assert "alerts still undelivered after the 1 s shutdown grace were abandoned" in said


async def test_failed_deliveries_are_counted_in_the_stats() -> None:
    class Broken(Alerter):
        timeout = 5.0

        def __init__(self) -> None:
            self.calls = 0
            self.second_call = anyio.Event()

        async def send(self, alert: Alert) -> None:
            self.calls += 1
            if self.calls == 2:  # one channel delivers in order: the first is counted
                self.second_call.set()
            raise ConnectionRefusedError("smtp.example.com:587 refused the connection")

    broken, inbox = Broken(), Inbox()
    scheduler = Scheduler(plugins=False, alerters=[broken, inbox])
    scheduler.add(Task("broken", failing))
    scheduler.add(Task("also_broken", failing))
    async with scheduler:
        await (await scheduler.trigger("broken")).wait()
        await (await scheduler.trigger("also_broken")).wait()
        await inbox.wait_for(2)  # channels are independent: the broken one blocks nobody
        with anyio.fail_after(10):
            await broken.second_call.wait()
        stats = scheduler.stats()
        assert stats.alerts_failed >= 1 and stats.alerts_dropped == 0
