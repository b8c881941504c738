"""What subscribers hear: run transitions, task state changes and alerts.

Events are published after the store has the change, so a subscriber that reads the
store back sees what the event says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from ._runs import RunRecord, TaskState

__all__ = ["Alert", "AlertKind", "Event", "RunChanged", "TaskStateChanged"]


@dataclass(frozen=True, slots=True)
class RunChanged:
    """A run changed status; ``record`` is the new snapshot."""

    record: RunRecord


@dataclass(frozen=True, slots=True)
class TaskStateChanged:
    """A task was paused, resumed or cancelled."""

    task: str
    state: TaskState


class AlertKind(StrEnum):
    """The two moments someone should hear about."""

    FAILING = "failing"  #: consecutive failed runs reached the task's ``alert_after``
    RECOVERED = "recovered"  #: the first success after a ``failing`` alert


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """Sent once per failing streak, and once when it ends."""

    kind: AlertKind
    task: str
    run: RunRecord  #: the run that crossed the threshold, or the one that recovered
    consecutive_failures: int  #: the count that triggered ``failing`` (0 for ``recovered``)
    at: datetime
    #: When the task last succeeded (a ``failing`` alert's context), read from the store
    #: as the alert is delivered; ``None`` when it never did or the store could not say.
    last_success: datetime | None = None


Event = RunChanged | TaskStateChanged | Alert
