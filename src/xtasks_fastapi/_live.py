"""The live parts of the manager API: server-sent events, Prometheus metrics, body limits."""

from __future__ import annotations

import json
import weakref
from collections import defaultdict
from contextlib import aclosing
from dataclasses import fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import HTTPException, Request, status

from xtasks import AttemptRecord, ErrorInfo, RunRecord, TaskState
from xtasks.events import RunChanged, TaskStateChanged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from xtasks import Scheduler
    from xtasks.events import Event

__all__ = [
    "ERROR_EVENT_LEFT_OUT",
    "EVENT_MESSAGE_CHARS",
    "KEEPALIVE_SECONDS",
    "MAX_BODY_BYTES",
    "PROMETHEUS_CONTENT_TYPE",
    "RUN_EVENT_LEFT_OUT",
    "RunMetrics",
    "end_event_streams",
    "event_stream",
    "limit_body",
    "run_event_data",
]

#: Seconds between ``: keepalive`` comments on an idle event stream.
KEEPALIVE_SECONDS = 15.0

#: Largest request body the write routes accept.
MAX_BODY_BYTES = 1024 * 1024

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- server-sent events ------------------------------------------------------------------


#: What an ``event: run`` leaves out of a record, on purpose: the result (any object of
#: any size; ``GET /runs/{id}`` has it) and the error's traceback (long; the type and the
#: message are what a live view shows). Every other field is sent.
RUN_EVENT_LEFT_OUT = frozenset({"result"})
ERROR_EVENT_LEFT_OUT = frozenset({"traceback"})
#: Characters of an error message an ``event: run`` carries, at most (its start, the cut
#: marked); ``GET /runs/{id}`` has the message as stored.
EVENT_MESSAGE_CHARS = 1024

_RUN_EVENT_FIELDS = tuple(f.name for f in fields(RunRecord) if f.name not in RUN_EVENT_LEFT_OUT)
_ERROR_EVENT_FIELDS = tuple(f.name for f in fields(ErrorInfo) if f.name not in ERROR_EVENT_LEFT_OUT)


def _event_value(value: object) -> object:
    """``value`` as JSON can carry it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, ErrorInfo):
        data = {name: getattr(value, name) for name in _ERROR_EVENT_FIELDS}
        if "message" in data:
            data["message"] = value.short_message(EVENT_MESSAGE_CHARS)
        return data
    if isinstance(value, tuple):  # earlier_attempts: each as its error is, above
        return [
            {f.name: _event_value(getattr(item, f.name)) for f in fields(AttemptRecord)}
            for item in value
        ]
    return value


def run_event_data(record: RunRecord) -> dict[str, Any]:
    """The JSON an ``event: run`` carries: every field of the record but those of
    :data:`RUN_EVENT_LEFT_OUT`, the error without :data:`ERROR_EVENT_LEFT_OUT` and its
    message cut to :data:`EVENT_MESSAGE_CHARS`."""
    return {name: _event_value(getattr(record, name)) for name in _RUN_EVENT_FIELDS}


def format_event(event: Event) -> str | None:
    """One server-sent event for ``event``, or ``None`` for events not streamed."""
    if isinstance(event, RunChanged):
        name, data = "run", run_event_data(event.record)
    elif isinstance(event, TaskStateChanged):
        name, data = "task", {"name": event.task, "state": str(event.state)}
    else:
        return None
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _StreamCloser:
    """Lets :func:`end_event_streams` end one open stream from another task."""

    __slots__ = ("closed", "scope")

    def __init__(self) -> None:
        self.closed = False
        self.scope: anyio.CancelScope | None = None

    def close(self) -> None:
        self.closed = True
        if self.scope is not None:
            self.scope.cancel()


#: The open event streams of each scheduler, so that a server can end them at shutdown.
_open_streams: weakref.WeakKeyDictionary[Scheduler, set[_StreamCloser]] = (
    weakref.WeakKeyDictionary()
)


def end_event_streams(scheduler: Scheduler) -> int:
    """End every open ``/events`` stream of ``scheduler`` now; return how many there were.

    Call it on the server's event loop when the server starts shutting down. uvicorn
    waits for open responses to finish *before* it runs the lifespan shutdown that stops
    the scheduler, so a stream that only ended with the scheduler would hold the shutdown
    until ``--timeout-graceful-shutdown`` (forever by default), and a second Ctrl-C would
    skip the scheduler's flush. ``xtasks serve`` calls this as soon as it is told to stop;
    browsers' ``EventSource`` reconnects by itself once the server is back.
    """
    closers = list(_open_streams.get(scheduler, ()))
    for closer in closers:
        closer.close()
    return len(closers)


async def event_stream(scheduler: Scheduler) -> AsyncIterator[str]:
    """Run and task events as server-sent events, until the scheduler stops.

    A comment opens the stream (once subscribed) and one is sent every
    :data:`KEEPALIVE_SECONDS` while idle; a client that went away is noticed by the server
    when a send fails, at the latest at the next keepalive, and the generator is closed.
    The stream also ends when :func:`end_event_streams` is called (server shutdown).
    """
    closer = _StreamCloser()
    streams = _open_streams.setdefault(scheduler, set())
    streams.add(closer)
    try:
        async with scheduler.events() as events:
            yield ": connected\n\n"
            while not closer.closed:
                text: str | None = None
                with anyio.move_on_after(KEEPALIVE_SECONDS) as scope:
                    closer.scope = scope
                    try:
                        event = await events.receive()
                    except anyio.EndOfStream:  # the scheduler stopped
                        return
                    text = format_event(event)
                    if text is None:
                        continue
                closer.scope = None
                if closer.closed:
                    return
                yield text if text is not None else ": keepalive\n\n"
    finally:
        streams.discard(closer)


# --- metrics -----------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RunMetrics:
    """Counts the final runs a scheduler publishes (a ``scheduler.subscribe`` callback)."""

    def __init__(self) -> None:
        self.runs: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.duration_sum: defaultdict[str, float] = defaultdict(float)
        self.duration_count: defaultdict[str, int] = defaultdict(int)

    def __call__(self, event: Event) -> None:
        if not isinstance(event, RunChanged) or not event.record.status.is_final:
            return
        record = event.record
        self.runs[record.task, str(record.status)] += 1
        if record.started_at is not None and record.finished_at is not None:
            seconds = (record.finished_at - record.started_at).total_seconds()
            self.duration_sum[record.task] += max(seconds, 0.0)
            self.duration_count[record.task] += 1

    async def render(self, scheduler: Scheduler) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        states = dict.fromkeys((str(s) for s in TaskState), 0)
        if scheduler.running:  # from memory: no store read per task
            for state in scheduler.states().values():
                states[str(state)] = states.get(str(state), 0) + 1
        lines = [
            "# HELP xtasks_up Whether the scheduler is running.",
            "# TYPE xtasks_up gauge",
            f"xtasks_up {1 if scheduler.running else 0}",
            "# HELP xtasks_runs_total Finished runs by task and final status.",
            "# TYPE xtasks_runs_total counter",
        ]
        lines += [
            f'xtasks_runs_total{{task="{_label(task)}",status="{_label(st)}"}} {count}'
            for (task, st), count in sorted(self.runs.items())
        ]
        lines += [
            "# HELP xtasks_run_duration_seconds Time from start to finish of final runs.",
            "# TYPE xtasks_run_duration_seconds summary",
        ]
        for task in sorted(self.duration_count):
            label = f'{{task="{_label(task)}"}}'
            lines.append(f"xtasks_run_duration_seconds_sum{label} {self.duration_sum[task]!r}")
            lines.append(f"xtasks_run_duration_seconds_count{label} {self.duration_count[task]}")
        lines += [
            "# HELP xtasks_tasks Registered tasks by state.",
            "# TYPE xtasks_tasks gauge",
        ]
        lines += [f'xtasks_tasks{{state="{_label(s)}"}} {n}' for s, n in sorted(states.items())]
        stats = scheduler.stats()
        lines += [
            "# HELP xtasks_queued_runs Runs ready to start, waiting for a worker or a slot.",
            "# TYPE xtasks_queued_runs gauge",
            f"xtasks_queued_runs {stats.queued}",
            "# HELP xtasks_running_runs Attempts executing now in this process.",
            "# TYPE xtasks_running_runs gauge",
            f"xtasks_running_runs {stats.running}",
            "# HELP xtasks_timer_lag_seconds How late the timer handled its latest due fire.",
            "# TYPE xtasks_timer_lag_seconds gauge",
            f"xtasks_timer_lag_seconds {stats.timer_lag!r}",
            "# HELP xtasks_loop_lag_seconds How late the event loop last woke a sleeper.",
            "# TYPE xtasks_loop_lag_seconds gauge",
            f"xtasks_loop_lag_seconds {stats.loop_lag!r}",
            "# HELP xtasks_loop_lag_max_seconds The largest loop lag of the last minute.",
            "# TYPE xtasks_loop_lag_max_seconds gauge",
            f"xtasks_loop_lag_max_seconds {stats.loop_lag_max!r}",
            "# HELP xtasks_alerts_failed_total Alert deliveries that raised or timed out.",
            "# TYPE xtasks_alerts_failed_total counter",
            f"xtasks_alerts_failed_total {stats.alerts_failed}",
            "# HELP xtasks_alerts_dropped_total Alerts dropped because a queue was full.",
            "# TYPE xtasks_alerts_dropped_total counter",
            f"xtasks_alerts_dropped_total {stats.alerts_dropped}",
            "# HELP xtasks_store_writable 1 while the store takes writes, 0 while they fail.",
            "# TYPE xtasks_store_writable gauge",
            f"xtasks_store_writable {int(stats.store_writable)}",
            "# HELP xtasks_store_backlog Run records and task states waiting to be written.",
            "# TYPE xtasks_store_backlog gauge",
            f"xtasks_store_backlog {stats.store_backlog}",
            "# HELP xtasks_store_write_failures_total Store writes that failed (and are retried).",
            "# TYPE xtasks_store_write_failures_total counter",
            f"xtasks_store_write_failures_total {stats.store_write_failures}",
            "# HELP xtasks_fires_unclaimed Due fires the store could not claim, to record missed.",
            "# TYPE xtasks_fires_unclaimed gauge",
            f"xtasks_fires_unclaimed {stats.fires_unclaimed}",
        ]
        return "\n".join(lines) + "\n"


# --- request body limit ------------------------------------------------------------------


def _too_large() -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body too large: the manager accepts at most {MAX_BODY_BYTES} bytes",
    )


async def limit_body(request: Request) -> None:
    """Refuse bodies over :data:`MAX_BODY_BYTES`: by ``Content-Length``, else by counting."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "invalid Content-Length header"
            ) from None
        if size > MAX_BODY_BYTES:
            raise _too_large()
    seen = 0
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > MAX_BODY_BYTES:
                raise _too_large()
