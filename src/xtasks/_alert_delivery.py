"""Alert delivery, kept off the run path: bounded queues, timeouts, drained at shutdown.

The planner decides *that* someone should hear about a task (``SendAlert``); this module
decides nothing, it only gets the alert to each channel that wants it:

- ``put`` never blocks and never fails: a full queue drops the alert and counts it;
- one router task adds what the planner cannot know without I/O (the time of the task's
  last success, read from the store) and hands the alert to each selected channel;
- one delivery loop per alerter, each bounded by the alerter's ``timeout``, so a hung
  mail server delays nobody but itself;
- at shutdown the queues are drained for up to the scheduler's grace period, so an alert
  raised by the last runs still goes out.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, final

import anyio

from ._events import AlertKind
from ._runs import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._events import Alert, Event
    from ._service import Spawner
    from .abc import Alerter, Store

__all__ = ["ALERT_QUEUE_SIZE", "AlertDelivery", "Channel"]

_log = logging.getLogger("xtasks")

#: Alerts waiting (before routing, and per alerter) before new ones are dropped.
ALERT_QUEUE_SIZE = 1000

#: Seconds the router waits for the store when it looks up a task's last success.
LAST_SUCCESS_TIMEOUT = 5.0


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Channel:
    """An alerter and the name tasks select it by (``None``: every task's alerts)."""

    alerter: Alerter
    name: str | None = None


@final
class AlertDelivery:
    """Routes the planner's alerts to the channels each task selected, and delivers them."""

    def __init__(
        self,
        channels: Sequence[Channel],
        store: Store,
        selection: Callable[[str], Collection[str] | None],
        publish: Callable[[Event], None] | None = None,
    ) -> None:
        """:param selection: the channel names a task's alerts go to; ``None`` for all.
        :param publish: where each alert is also published as an event, once complete
            (with its last success), as it is handed to the channels."""
        self.channels = list(channels)
        self.publish = publish
        self.store = store
        self.selection = selection
        self.dropped = 0  #: alerts dropped because a queue was full
        self.failed = 0  #: deliveries that raised or timed out
        self._inbox_send, self._inbox = anyio.create_memory_object_stream["Alert"](ALERT_QUEUE_SIZE)
        self._outboxes: list[MemoryObjectSendStream[Alert]] = []
        self._loops = 0
        self._drained = anyio.Event()
        self._scope = anyio.CancelScope()

    def start(self, tg: Spawner) -> None:
        tg.start_soon(self._run, name="xtasks alert delivery")

    def put(self, alert: Alert) -> None:
        """Queue ``alert``; never blocks. After :meth:`close`, alerts are dropped."""
        try:
            self._inbox_send.send_nowait(alert)
        except anyio.WouldBlock:
            self._drop(alert, "the alert queue is full")
        except anyio.ClosedResourceError:
            self._drop(alert, "the scheduler is stopping")

    async def close(self, grace: float) -> None:
        """Stop taking alerts, deliver the queued ones for up to ``grace`` seconds."""
        self._inbox_send.close()
        with anyio.move_on_after(grace) as waited:
            await self._drained.wait()
        if waited.cancelled_caught:
            _log.error(
                "alerts still undelivered after the %g s shutdown grace were abandoned", grace
            )
        self._scope.cancel()

    # --- the loops ----------------------------------------------------------------------

    async def _run(self) -> None:
        with self._scope:
            async with anyio.create_task_group() as tg:
                for channel in self.channels:
                    send, receive = anyio.create_memory_object_stream["Alert"](ALERT_QUEUE_SIZE)
                    self._outboxes.append(send)
                    self._loops += 1
                    tg.start_soon(
                        self._deliver, channel.alerter, receive, name=f"xtasks alerter {channel}"
                    )
                await self._route()
        self._drained.set()

    async def _route(self) -> None:
        async with self._inbox:
            async for alert in self._inbox:
                selected = self.selection(alert.task)
                if alert.kind is AlertKind.FAILING:
                    alert = await self._with_last_success(alert)
                if self.publish is not None:
                    self.publish(alert)
                for channel, outbox in zip(self.channels, self._outboxes, strict=True):
                    unselected = selected is not None and channel.name not in selected
                    if channel.name is not None and unselected:
                        continue
                    try:
                        outbox.send_nowait(alert)
                    except anyio.WouldBlock:
                        self._drop(alert, f"the queue of {channel.alerter!r} is full")
        for outbox in self._outboxes:
            outbox.close()

    async def _with_last_success(self, alert: Alert) -> Alert:
        try:
            with anyio.fail_after(LAST_SUCCESS_TIMEOUT):
                runs = await self.store.list_runs(
                    task=alert.task, statuses=[RunStatus.SUCCEEDED], limit=1
                )
        except Exception as exc:  # noqa: BLE001 - the alert matters more than this detail
            _log.warning("alert for task %r: cannot read its last success: %s", alert.task, exc)
            return alert
        if not runs or runs[0].finished_at is None:
            return alert
        return dataclasses.replace(alert, last_success=runs[0].finished_at)

    async def _deliver(self, alerter: Alerter, receive: MemoryObjectReceiveStream[Alert]) -> None:
        async with receive:
            async for alert in receive:
                timeout = getattr(alerter, "timeout", 30.0) or math.inf
                try:
                    with anyio.fail_after(timeout):
                        await alerter.send(alert)
                except TimeoutError:
                    self.failed += 1
                    _log.error(
                        "alerter %r gave up on a %s alert for task %r after %g s",
                        alerter,
                        alert.kind.value,
                        alert.task,
                        timeout,
                    )
                except Exception:  # noqa: BLE001 - a broken alerter never stops scheduling
                    self.failed += 1
                    _log.exception(
                        "alerter %r failed to send a %s alert for task %r",
                        alerter,
                        alert.kind.value,
                        alert.task,
                    )

    def _drop(self, alert: Alert, why: str) -> None:
        self.dropped += 1
        _log.error("dropped a %s alert for task %r: %s", alert.kind.value, alert.task, why)
