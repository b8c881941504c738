"""The words of an alert, shared by every channel that shows one to people.

Pure functions of an :class:`xtasks.events.Alert` (and the manager's URL): a subject line, the
facts as labelled lines, a plain-text body and an HTML body in which every value is
escaped. Bounded whatever the task raised: the message is cut to :data:`MESSAGE_CHARS`,
the traceback to its last :data:`TRACEBACK_LINES` lines and :data:`TRACEBACK_CHARS`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import quote

from xtasks.events import AlertKind

if TYPE_CHECKING:
    from datetime import datetime

    from xtasks import ErrorInfo
    from xtasks.events import Alert

__all__ = [
    "MESSAGE_CHARS",
    "TRACEBACK_CHARS",
    "TRACEBACK_LINES",
    "facts",
    "html_body",
    "manager_link",
    "subject",
    "text_body",
]

#: Lines of the traceback an alert shows: its end, where the error is.
TRACEBACK_LINES = 20
#: Characters of those lines shown, at most (their end; the cut is marked).
TRACEBACK_CHARS = 4096
#: Characters of the error message an alert shows, at most (its start; the cut is
#: marked). The manager's run page has the message as stored.
MESSAGE_CHARS = 2000


def subject(alert: Alert) -> str:
    """``[xtasks] task 'X' is failing (3 consecutive failures)``, or ``... recovered``."""
    if alert.kind is AlertKind.FAILING:
        n = alert.consecutive_failures
        plural = "" if n == 1 else "s"
        return f"[xtasks] task {alert.task!r} is failing ({n} consecutive failure{plural})"
    return f"[xtasks] task {alert.task!r} recovered"


def manager_link(manager_url: str | None, task: str) -> str | None:
    """The manager's page of ``task`` (``{manager_url}/view/{task}``), or ``None``."""
    if not manager_url:
        return None
    return f"{manager_url.rstrip('/')}/view/{quote(task, safe='')}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ", timespec="seconds")


def facts(alert: Alert, manager_url: str | None = None) -> list[tuple[str, str]]:
    """The alert as ``(label, value)`` pairs, in the order people read them.

    A ``failing`` alert shows when the task last succeeded ("never" when it has not); a
    ``recovered`` alert's run *is* the success, and its finish time is shown.
    """
    run = alert.run
    rows: list[tuple[str, str | None]] = [
        ("Task", alert.task),
        ("Status", "failing" if alert.kind is AlertKind.FAILING else "recovered"),
    ]
    if alert.kind is AlertKind.FAILING:
        rows.append(("Consecutive failures", str(alert.consecutive_failures)))
        rows.append(("Last success", _time(alert.last_success) or "never (or not recorded)"))
    if run.error is not None:
        rows += [
            ("Error type", run.error.type),
            ("Error message", run.error.short_message(MESSAGE_CHARS)),
        ]
    rows += [
        ("Run id", run.id),
        ("Run status", run.status.value),
        ("Cause", run.cause.value),
        ("Scheduled at", _time(run.scheduled_at)),
        ("Started at", _time(run.started_at)),
        ("Finished at", _time(run.finished_at)),
        ("Attempts", str(run.attempts)),
        ("Alert time", _time(alert.at)),
        ("Manager", manager_link(manager_url, alert.task)),
    ]
    return [(label, value) for label, value in rows if value is not None and value != ""]


def _traceback(error: ErrorInfo) -> str:
    return error.traceback_tail(TRACEBACK_LINES, TRACEBACK_CHARS)


def _intro(alert: Alert) -> str:
    if alert.kind is AlertKind.FAILING:
        n = alert.consecutive_failures
        runs = "run" if n == 1 else "runs"
        return f"Task {alert.task!r} is failing: its last {n} {runs} failed."
    return f"Task {alert.task!r} recovered: run {alert.run.id} succeeded."


def text_body(alert: Alert, manager_url: str | None = None) -> str:
    """The plain-text body."""
    rows = facts(alert, manager_url)
    width = max(len(label) for label, _ in rows)
    parts = [_intro(alert), "", *(f"{label + ':':<{width + 1}} {value}" for label, value in rows)]
    if alert.run.error is not None and alert.run.error.traceback:
        parts += ["", "Traceback (last lines):", _traceback(alert.run.error)]
    return "\n".join(parts) + "\n"


def html_body(alert: Alert, manager_url: str | None = None) -> str:
    """The HTML body; every value taken from the alert is escaped."""
    e = html.escape
    link = manager_link(manager_url, alert.task)
    cells = []
    for label, value in facts(alert, manager_url):
        shown = f'<a href="{e(value)}">{e(value)}</a>' if value == link else e(value)
        cells.append(
            f'<tr><th style="text-align:left;padding-right:1em">{e(label)}</th>'
            f"<td>{shown}</td></tr>"
        )
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{e(subject(alert))}</title></head><body>",
        f"<p>{e(_intro(alert))}</p>",
        "<table>",
        *cells,
        "</table>",
    ]
    if alert.run.error is not None and alert.run.error.traceback:
        parts += [
            "<p>Traceback (last lines):</p>",
            f"<pre>{e(_traceback(alert.run.error))}</pre>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
