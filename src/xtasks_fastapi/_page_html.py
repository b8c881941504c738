"""The manager page's HTML: one document per page, every value escaped on the way in.

:class:`Page` renders the task list, a task's page with its history, a run's page, the
runs view, messages and the sign-in form (the charts are drawn by ``manager.js``), with the security headers each needs (a Content-Security-Policy that
forbids inline script; the sign-in page's few inline rules are allowed by their hash).
:mod:`._page` serves them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import HTMLResponse, Response

from xtasks import ErrorInfo, RunStatus, TaskState

from ._auth import CSRF_HEADER
from ._page_assets import asset_version

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xtasks import TaskInfo

    from ._schemas import AttemptOut, RunOut, TaskDetail, TaskSummary

__all__ = ["CONTENT_SECURITY_POLICY", "PAGE_SIZE", "Page"]

#: The policy of every page: nothing inline, nothing from elsewhere, never in a frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

#: Runs per page of a task's history.
PAGE_SIZE = 25

#: Runs the strip on a task's page draws (the page script reads them from the API).
STRIP_RUNS = 100

#: Lines of a traceback shown on the task page (its end, where the error is).
TRACEBACK_LINES = 40

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# The sign-in page is shown before any credential exists, so it cannot load the
# (authenticated) stylesheet: its few rules are inline, allowed by their hash only.
_LOGIN_STYLE = (
    "body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;"
    "background:#f4f6f9;color:#1d2433}"
    "main{max-width:24rem;margin:12vh auto;background:#fff;padding:2rem;border-radius:10px;"
    "box-shadow:0 1px 3px #0002}"
    "h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;font-weight:600;margin:.5rem 0}"
    "input{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #c5ccd6;"
    "border-radius:6px;font:inherit}"
    "button{margin-top:1rem;padding:.55rem 1.2rem;border:0;border-radius:6px;"
    "background:#2456c9;color:#fff;font:inherit;cursor:pointer}"
    ".error{background:#fde8e8;color:#9b1c1c;padding:.5rem .75rem;border-radius:6px}"
    ".hint{color:#5b6475;font-size:.9rem}"
)
_LOGIN_STYLE_HASH = base64.b64encode(hashlib.sha256(_LOGIN_STYLE.encode()).digest()).decode()
_LOGIN_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", f"style-src 'sha256-{_LOGIN_STYLE_HASH}'"
).replace("script-src 'self'", "script-src 'none'")

_STATUS_CLASS = {
    RunStatus.SUCCEEDED: "ok",
    RunStatus.FAILED: "bad",
    RunStatus.LOST: "bad",
    RunStatus.RUNNING: "run",
    RunStatus.QUEUED: "wait",
    RunStatus.WAITING: "wait",
    RunStatus.CANCELLED: "warn",
    RunStatus.SKIPPED: "dim",
    RunStatus.MISSED: "dim",
}

# Which actions fit each state: (action, label, HTTP method, path suffix).
_ACTIONS = (
    ("run", "Run", "POST", "/run"),
    ("pause", "Pause", "POST", "/pause"),
    ("resume", "Resume", "POST", "/resume"),
    ("cancel", "Cancel", "DELETE", ""),
)
_FITS = {
    TaskState.ACTIVE: {"run", "pause", "cancel"},
    TaskState.PAUSED: {"resume", "cancel"},
    TaskState.CANCELLED: {"resume"},
}


def _e(value: object) -> str:
    """Escape anything for HTML text and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _when(value: datetime | None) -> str:
    """A time in UTC; the page script shows it in the browser's zone, UTC on hover."""
    if value is None:
        return '<span class="none">—</span>'
    utc = value.astimezone(UTC)
    return (
        f'<time datetime="{_e(utc.isoformat())}" title="{_e(_utc_text(utc))} UTC">'
        f"{_e(_utc_text(utc))}</time>"
    )


def _seconds(seconds: float) -> str:
    if abs(seconds) < 60:
        return f"{seconds:.2f} s" if abs(seconds) < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(abs(seconds)), 60)
    sign = "-" if seconds < 0 else ""
    if minutes < 60:
        return f"{sign}{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes} min"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return _seconds(max((end - start).total_seconds(), 0.0))


def _lateness(run: RunOut) -> str:
    """How long after its scheduled time the run started (empty when not started)."""
    if run.started_at is None:
        return ""
    late = (run.started_at - run.scheduled_at).total_seconds()
    return f"{_seconds(late)} late" if late >= 0 else f"{_seconds(-late)} early"


def _badge(value: object, css: str) -> str:
    return f'<span class="badge {css}">{_e(value)}</span>'


def _status_badge(value: RunStatus | None) -> str:
    if value is None:
        return '<span class="none">never run</span>'
    return _badge(value, _STATUS_CLASS.get(value, "dim"))


def _state_badge(value: TaskState) -> str:
    return _badge(value, f"state-{value}")


def _buttons(name: str, state: TaskState, can_write: bool) -> str:
    if not can_write:
        return ""
    fits = _FITS.get(state, set())
    out = []
    for action, label, method, _suffix in _ACTIONS:
        hidden = "" if action in fits else " hidden"
        out.append(
            f'<button type="button" class="btn btn-{action}" data-action="{action}" '
            f'data-method="{method}" data-task="{_e(name)}"{hidden}>{label}</button>'
        )
    return f'<span class="actions">{"".join(out)}</span>'


def _error_html(error: Any, *, open_trace: bool = False) -> str:
    """An error's type and message, and its traceback's end folded away."""
    trace = ""
    if error.traceback:
        tail = ErrorInfo(**error.model_dump()).traceback_tail(TRACEBACK_LINES)
        opened = " open" if open_trace else ""
        trace = f"<details{opened}><summary>traceback</summary><pre>{_e(tail)}</pre></details>"
    return (
        f'<div class="error-text"><span class="etype">{_e(error.type)}</span>: '
        f'<span class="emsg">{_e(error.message)}</span></div>{trace}'
    )


def _earlier_html(attempts: list[AttemptOut]) -> str:
    """The attempts before the last, oldest first, each with its error."""
    if not attempts:
        return ""
    items = "".join(
        f'<li data-attempt="{a.number}"><span class="anum">attempt {a.number}</span> '
        f'<span class="etype">{_e(a.error.type)}</span>: <span class="emsg">'
        f"{_e(a.error.message)}</span></li>"
        for a in attempts
    )
    return f'<ol class="attempts-list">{items}</ol>'


def _where_title(run: RunOut) -> str:
    """Where a run ran, on hover: ``replica web-1:4242 · worker celery@host1``."""
    parts = [f"replica {run.replica}"] if run.replica else []
    if run.worker:
        parts.append(f"worker {run.worker}")
    return " · ".join(parts)


def _executor_sub(run: RunOut) -> str:
    """The executor under a run's status, in a history row; the replica and the worker
    that ran it on hover."""
    if not run.executor:
        return ""
    where = _where_title(run)
    title = f' title="{_e(where)}"' if where else ""
    return f'<div class="sub executor"{title}>{_e(run.executor)}</div>'


def _where_html(run: RunOut) -> str:
    """Where a run ran, on its page: ``celery · worker celery@host1``."""
    if not run.executor:
        return '<span class="none">—</span>'
    executor = f'<span class="executor">{_e(run.executor)}</span>'
    if not run.worker:
        return executor
    return f'{executor} · worker <span class="worker mono">{_e(run.worker)}</span>'


def _run_link(page: Page, run_id: str) -> str:
    return page.url("/run/" + urllib.parse.quote(run_id, safe=""))


class Page:
    """Renders the pages of one manager router."""

    def __init__(self, prefix: str, *, has_sessions: bool) -> None:
        self.prefix = prefix
        self.has_sessions = has_sessions

    def url(self, path: str) -> str:
        return _e(self.prefix + path)

    def asset(self, name: str) -> str:
        return self.url(f"/static/{name}?v={asset_version(name)}")

    def document(
        self,
        title: str,
        body: str,
        *,
        principal: Any = None,
        task: str | None = None,
        view: str = "",
        status_code: int = 200,
        after: int | None = None,
    ) -> HTMLResponse:
        """A whole page. ``after``: the store's latest run change before the page read
        what it shows; its stream starts after it (``data-changes-after``)."""
        can_write = bool(getattr(principal, "can_write", False))
        who = getattr(principal, "name", None)
        access = "" if can_write else ' <span class="badge dim">read-only</span>'
        sign_out = (
            f'<form method="post" action="{self.url("/session/logout")}" class="signout">'
            '<button type="submit" class="btn btn-plain">Sign out</button></form>'
            if self.has_sessions
            else ""
        )
        task_attr = f' data-task="{_e(task)}"' if task is not None else ""
        view_attr = f' data-view="{_e(view)}"' if view else ""
        after_attr = f' data-changes-after="{after}"' if after is not None else ""
        text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)} · xtasks manager</title>
<link rel="icon" href="{self.asset("icon.svg")}" type="image/svg+xml">
<link rel="stylesheet" href="{self.asset("manager.css")}">
<script src="{self.asset("manager.js")}" defer></script>
</head>
<body data-prefix="{_e(self.prefix)}" data-can-write="{str(can_write).lower()}"\
 data-csrf-header="{_e(CSRF_HEADER)}"{task_attr}{view_attr}{after_attr}>
<header class="bar">
<a class="brand" href="{self.url("/")}"><img src="{self.asset("icon.svg")}" alt="" \
width="22" height="22"> xtasks manager</a>
<nav class="nav"><a href="{self.url("/")}">Tasks</a><a href="{self.url("/history")}">Runs</a>\
</nav>
<span class="spacer"></span>
<span id="live" class="live" role="status" title="live updates from \
{self.url("/events")}">offline</span>
<span class="who">{_e(who or "")}{access}</span>
{sign_out}
</header>
<main>
<div id="flash" class="flash" role="status" aria-live="polite" hidden></div>
{body}
</main>
</body>
</html>
"""
        return HTMLResponse(text, status_code, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **_SECURITY_HEADERS}

    def message(self, title: str, text: str, status_code: int, principal: Any = None) -> Response:
        body = (
            f'<h1>{_e(title)}</h1><p class="notice">{_e(text)}</p>'
            f'<p><a href="{self.url("/")}">Back to the task list</a></p>'
        )
        return self.document(title, body, principal=principal, status_code=status_code)

    def login(self, *, error: str | None = None, status_code: int = 401) -> HTMLResponse:
        if self.has_sessions:
            problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
            form = f"""{problem}
<form method="post" action="{self.url("/session")}">
<label for="token">Manager token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required \
autofocus>
<button type="submit">Sign in</button>
</form>
<p class="hint">The manager token lets you run, pause, resume and cancel tasks; a read
token only lets you look.</p>"""
        else:
            form = (
                '<p class="error" role="alert">'
                f"{_e(error or 'authentication required')}</p>"
                '<p class="hint">This manager uses the application\'s own sign-in: sign in '
                "through the application, then reload this page.</p>"
            )
        text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · xtasks manager</title>
<style>{_LOGIN_STYLE}</style>
</head>
<body>
<main>
<h1>xtasks manager</h1>
{form}
</main>
</body>
</html>
"""
        headers = {
            "Content-Security-Policy": _LOGIN_POLICY,
            **_SECURITY_HEADERS,
            "WWW-Authenticate": "Bearer",
        }
        return HTMLResponse(text, status_code, headers=headers)

    # --- the task list ------------------------------------------------------------------

    def task_row(self, summary: TaskSummary, info: TaskInfo, can_write: bool) -> str:
        name = summary.name
        last = info.last_run
        last_when = None if last is None else last.finished_at or last.started_at
        last_when = last_when or (None if last is None else last.scheduled_at)
        origin = (
            f'<span class="origin">{_e(summary.plugin)}</span>'
            if summary.plugin
            else '<span class="origin none">app</span>'
        )
        subs = [origin]
        if summary.depends_on:
            subs.append(f"after {_e(', '.join(summary.depends_on))}")
        description = info.task.description.strip()
        desc = (
            f'<div class="desc" title="{_e(description)}">{_e(description)}</div>'
            if description
            else ""
        )
        failures = summary.consecutive_failures
        return f"""<tr data-task="{_e(name)}" data-state="{_e(summary.state)}">
<td class="name" data-label="Task"><div><a href="\
{self.url("/view/" + urllib.parse.quote(name, safe=""))}">{_e(name)}</a>{desc}\
<div class="sub">{" · ".join(subs)}</div></div></td>
<td class="trigger" data-label="Trigger"><div>{_e(summary.trigger)}\
<div class="sub">priority {_e(summary.priority)}</div></div></td>
<td class="state" data-label="State">{_state_badge(summary.state)}</td>
<td class="next" data-label="Next fire">{_when(summary.next_fire)}</td>
<td class="last" data-label="Last run"><div><span class="last-status">\
{_status_badge(summary.last_run_status)}</span> \
<span class="last-when">{_when(last_when) if last is not None else ""}</span></div></td>
<td class="day" data-label="Last 24 h"><div class="day-chart" data-task="{_e(name)}"></div></td>
<td class="failures num{" bad-text" if failures else ""}" \
data-label="Consecutive failures">{failures}</td>
<td class="act" data-label="">{_buttons(name, summary.state, can_write)}</td>
</tr>"""

    def task_list(
        self,
        rows: Iterable[tuple[TaskSummary, TaskInfo]],
        principal: Any,
        *,
        after: int | None = None,
    ) -> Response:
        can_write = bool(getattr(principal, "can_write", False))
        body_rows = "\n".join(self.task_row(s, info, can_write) for s, info in rows)
        if not body_rows:
            body_rows = '<tr><td colspan="8" class="none">No tasks are registered.</td></tr>'
        body = f"""<div class="heading"><h1>Tasks</h1>\
<span class="hint tz-hint">times in UTC</span></div>
<section class="card timeline-card">
<div class="heading"><h2>Coming fires</h2><span class="hint" id="timeline-hint">\
the next hours, by task</span></div>
<div id="timeline" class="timeline" aria-label="coming fires by task"></div>
</section>
<div class="table-wrap">
<table class="tasks" id="tasks">
<thead><tr><th>Task</th><th>Trigger</th><th>State</th><th>Next fire</th>\
<th>Last run</th><th title="runs per hour over the last 24 hours; failures in red">\
Last 24 h</th><th class="num" title="consecutive failures">Failures</th>\
<th>{"Actions" if can_write else ""}</th></tr></thead>
<tbody>
{body_rows}
</tbody>
</table>
</div>"""
        return self.document("Tasks", body, principal=principal, view="tasks", after=after)

    # --- a task's page ------------------------------------------------------------------

    def run_row(self, run: RunOut) -> str:
        outcome = _earlier_html(run.earlier_attempts)
        if run.error is not None:
            outcome += _error_html(run.error)
        elif run.reason:
            outcome += f'<div class="sub">{_e(run.reason)}</div>'
        late = _lateness(run)
        replica = f' data-replica="{_e(run.replica)}"' if run.replica else ""
        return f"""<tr data-run="{_e(run.id)}"{replica}>
<td class="run-id" data-label="Run"><div><a class="mono" href="{_run_link(self, run.id)}">\
{_e(run.id)}</a><div class="sub cause">{_e(run.cause)}</div></div></td>
<td class="status" data-label="Status"><div>{_status_badge(run.status)}\
{_executor_sub(run)}</div></td>
<td class="scheduled" data-label="Scheduled">{_when(run.scheduled_at)}</td>
<td class="started" data-label="Started"><div>{_when(run.started_at)}\
<div class="sub late">{_e(late)}</div></div></td>
<td class="duration num" data-label="Duration">\
{_e(_duration(run.started_at, run.finished_at))}</td>
<td class="attempts num" data-label="Attempts">{run.attempts}</td>
<td class="outcome" data-label="Outcome">{outcome}</td>
</tr>"""

    def runs_table(self, rows: str, *, table_id: str, attrs: str = "") -> str:
        return f"""<div class="table-wrap">
<table class="runs" id="{table_id}"{attrs}>
<thead><tr><th>Run</th><th>Status</th><th>Scheduled</th><th>Started</th>\
<th class="num">Duration</th><th class="num">Attempts</th>\
<th>Error / reason</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>"""

    def task_page(
        self, detail: TaskDetail, *, more: bool, principal: Any, after: int | None = None
    ) -> Response:
        can_write = bool(getattr(principal, "can_write", False))
        name = detail.name
        settings: list[tuple[str, str]] = [
            ("Description", _e(detail.description) or '<span class="none">—</span>'),
            ("Target", f"<code>{_e(detail.target)}</code>"),
            ("Origin", _e(detail.plugin) if detail.plugin else "the application"),
            ("Trigger", _e(detail.trigger)),
            ("Next fire", f'<span class="next">{_when(detail.next_fire)}</span>'),
            ("Priority", _e(detail.priority)),
            ("Depends on", _e(", ".join(detail.depends_on)) or '<span class="none">—</span>'),
            ("Mode", _e(detail.mode)),
            ("Retries", _e(detail.max_retries)),
            ("Timeout", _e(f"{detail.timeout:g} s") if detail.timeout is not None else "none"),
            ("Overlap", _e(detail.overlap)),
            ("Enabled", "yes" if detail.enabled else "no"),
            ("Tags", _e(", ".join(detail.tags)) or '<span class="none">—</span>'),
            (
                "Consecutive failures",
                f'<span class="failures">{detail.consecutive_failures}</span>',
            ),
        ]
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in settings)
        rows = "\n".join(self.run_row(r) for r in detail.history)
        empty = "" if rows else '<p class="none" id="no-runs">No runs yet.</p>'
        limit, offset = detail.limit, detail.offset
        base = "/view/" + urllib.parse.quote(name, safe="")
        pager = []
        if offset > 0:
            newer = max(offset - limit, 0)
            pager.append(
                f'<a class="btn btn-plain" href="{self.url(f"{base}?limit={limit}&offset={newer}")}">'
                "← Newer</a>"
            )
        if more:
            older = offset + limit
            pager.append(
                f'<a class="btn btn-plain" href="{self.url(f"{base}?limit={limit}&offset={older}")}">'
                "Older →</a>"
            )
        shown = (
            f"runs {offset + 1}–{offset + len(detail.history)}, newest first"
            if detail.history
            else ""
        )
        table = self.runs_table(
            rows, table_id="runs", attrs=f' data-offset="{offset}" data-limit="{limit}"'
        )
        all_runs = self.url("/history?task=" + urllib.parse.quote(name, safe=""))
        body = f"""<p class="crumbs"><a href="{self.url("/")}">Tasks</a> /</p>
<div class="heading task-head">
<h1>{_e(name)}</h1>
<span class="state">{_state_badge(detail.state)}</span>
<span class="spacer"></span>
{_buttons(name, detail.state, can_write)}
</div>
<section class="card">
<div class="heading"><h2>Last {STRIP_RUNS} runs</h2><span class="hint">oldest to newest; \
height is duration, colour is status; click a bar to open the run</span></div>
<div id="strip" class="strip" data-task="{_e(name)}" data-runs="{STRIP_RUNS}"></div>
</section>
<section class="card"><h2>Settings</h2><dl class="settings">{dl}</dl></section>
<section class="card">
<div class="heading"><h2>History</h2><span class="hint">{_e(shown)}</span>\
<span class="spacer"></span><a href="{all_runs}">filter runs…</a></div>
{table}
{empty}
<nav class="pager">{"".join(pager)}</nav>
</section>"""
        return self.document(name, body, principal=principal, task=name, view="task", after=after)

    # --- one run ------------------------------------------------------------------------

    def run_page(self, run: RunOut, principal: Any, *, after: int | None = None) -> Response:
        task_url = self.url("/view/" + urllib.parse.quote(run.task, safe=""))
        finished = run.finished_at
        took = _duration(run.started_at, finished)
        late = _lateness(run)
        timings: list[tuple[str, str]] = [
            ("Scheduled", _when(run.scheduled_at)),
            ("Started", _when(run.started_at) + (f" · {_e(_lateness(run))}" if late else "")),
            ("Finished", _when(finished) + (f" · took {_e(took)}" if took else "")),
        ]
        facts: list[tuple[str, str]] = [
            ("Task", f'<a href="{task_url}">{_e(run.task)}</a>'),
            ("Status", _status_badge(run.status)),
            ("Cause", _e(run.cause)),
            ("Replica", _e(run.replica) or '<span class="none">—</span>'),
            ("Executor", _where_html(run)),
            ("Attempts", _e(run.attempts)),
            *timings,
        ]
        if run.reason:
            facts.append(("Reason", _e(run.reason)))
        if run.result_kind is not None:
            shown = (
                run.result
                if run.result_kind != "json"
                else json.dumps(run.result, ensure_ascii=False)
            )
            facts.append(("Result", f"<code>{_e(shown)}</code>"))
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        attempts = [
            f"""<li class="attempt" data-attempt="{attempt.number}">
<div class="attempt-head"><strong>Attempt {attempt.number}</strong> {_badge("failed", "bad")} \
{_when(attempt.started_at)} · took {_e(_duration(attempt.started_at, attempt.finished_at))}</div>
{_error_html(attempt.error)}</li>"""
            for attempt in run.earlier_attempts
        ]
        if run.attempts:
            last_error = _error_html(run.error, open_trace=True) if run.error else ""
            ended = f" · finished {_when(finished)}" if finished else ""
            attempts.append(
                f"""<li class="attempt last" data-attempt="{run.attempts}">
<div class="attempt-head"><strong>Attempt {run.attempts}</strong> \
{_status_badge(run.status)}{ended}</div>
{last_error}</li>"""
            )
        attempt_list = (
            f'<ol class="attempt-list">{"".join(attempts)}</ol>'
            if attempts
            else '<p class="none">It never started.</p>'
        )
        body = f"""<p class="crumbs"><a href="{self.url("/")}">Tasks</a> / \
<a href="{task_url}">{_e(run.task)}</a> /</p>
<div class="heading"><h1 class="run-title">Run <span class="mono">{_e(run.id)}</span></h1>\
{_status_badge(run.status)}</div>
<section class="card"><h2>Timeline</h2>
<div id="run-timeline" class="run-timeline" data-run="{_e(run.id)}" \
data-status="{_e(run.status)}" data-scheduled="{_e(run.scheduled_at.isoformat())}"\
 data-started="{_e(run.started_at.isoformat() if run.started_at else "")}"\
 data-finished="{_e(finished.isoformat() if finished else "")}"></div>
<dl class="settings">{dl}</dl></section>
<section class="card"><h2>Attempts</h2>{attempt_list}</section>"""
        return self.document(f"Run {run.id}", body, principal=principal, view="run", after=after)

    # --- the runs view ------------------------------------------------------------------

    def runs_view(self, tasks: list[str], principal: Any, *, after: int | None = None) -> Response:
        options = "".join(f'<option value="{_e(t)}">{_e(t)}</option>' for t in tasks)
        statuses = "".join(
            f'<label class="check"><input type="checkbox" name="status" value="{_e(s)}"> '
            f"{_e(s)}</label>"
            for s in RunStatus
        )
        body = f"""<div class="heading"><h1>Runs</h1><span class="hint">newest first</span></div>
<form id="run-filter" class="card filter" method="get" action="{self.url("/history")}">
<label>Task <select name="task"><option value="">every task</option>{options}</select></label>
<label>From <input type="datetime-local" name="since"></label>
<label>To <input type="datetime-local" name="until"></label>
<fieldset class="statuses"><legend>Status</legend>{statuses}</fieldset>
<button type="submit" class="btn btn-run">Show</button>
</form>
<p class="hint" id="runs-found" role="status"></p>
{self.runs_table("", table_id="run-list")}
<nav class="pager"><button type="button" class="btn btn-plain" id="more-runs" hidden>\
More</button></nav>"""
        return self.document("Runs", body, principal=principal, view="runs", after=after)
