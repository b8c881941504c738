"""The alerter every scheduler has: one log line per failing streak and per recovery."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from ._events import AlertKind
from .abc import Alerter

if TYPE_CHECKING:
    from ._events import Alert

__all__ = ["LOG_ERROR_CHARS", "LoggingAlerter"]

#: Characters of ``Type: message`` a failing alert's log line shows, at most.
LOG_ERROR_CHARS = 1024


@final
class LoggingAlerter(Alerter):
    """Logs ``failing`` at WARNING and ``recovered`` at INFO on the ``xtasks.alerts`` logger.

    A failing line shows the last error as ``Type: message``, cut to
    :data:`LOG_ERROR_CHARS` characters.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("xtasks.alerts")

    async def send(self, alert: Alert) -> None:
        if alert.kind is AlertKind.FAILING:
            error = alert.run.error
            self.logger.warning(
                "task %r is failing: %d consecutive failed run(s); last error: %s",
                alert.task,
                alert.consecutive_failures,
                # bounded, however long the message (history keeps it)
                error.short(LOG_ERROR_CHARS) if error is not None else None,
            )
        else:
            self.logger.info("task %r recovered (run %s succeeded)", alert.task, alert.run.id)
