"""The alerter every scheduler has: one log line per failing streak and per recovery."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from ._events import AlertKind
from .abc import Alerter

if TYPE_CHECKING:
    from ._events import Alert

__all__ = ["LoggingAlerter"]


@final
class LoggingAlerter(Alerter):
    """Logs ``failing`` at WARNING and ``recovered`` at INFO on the ``xtasks.alerts`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("xtasks.alerts")

    async def send(self, alert: Alert) -> None:
        if alert.kind is AlertKind.FAILING:
            self.logger.warning(
                "task %r is failing: %d consecutive failed run(s); last error: %s",
                alert.task,
                alert.consecutive_failures,
                alert.run.error,
            )
        else:
            self.logger.info("task %r recovered (run %s succeeded)", alert.task, alert.run.id)
