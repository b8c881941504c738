"""What subscribers hear: run transitions, task state changes and alerts.

``Scheduler.subscribe(callback)`` and ``Scheduler.events()`` deliver values of these types;
match on them::

    from xtasks.events import Alert, Event, RunChanged, TaskStateChanged

    def on_event(event: Event) -> None:
        match event:
            case RunChanged(record=record):  # a run changed status; the new snapshot
                ...
            case TaskStateChanged(task=task, state=state):  # paused, resumed, cancelled
                ...
            case Alert(kind=kind, task=task):  # a failing streak began, or ended
                ...

Run and task events are published after the store has the change, so a subscriber that
reads the store back sees what the event says; an alert is published as it is handed to
the alert channels. A plugin subscribes from its ``xtasks_configure`` hook.
"""

from __future__ import annotations

from ._events import Alert, AlertKind, Event, RunChanged, TaskStateChanged

__all__ = ["Alert", "AlertKind", "Event", "RunChanged", "TaskStateChanged"]
