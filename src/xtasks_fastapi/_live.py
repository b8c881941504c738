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

from xtasks import AttemptRecord, ErrorInfo, RunRecord, StoreError, TaskState
from xtasks.abc import RunTotals
from xtasks.events import RunChanged, TaskStateChanged

from ._feed import POLL_INTERVAL, RunFeed, run_feed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream

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


def format_run(number: int, record: RunRecord) -> str:
    """The ``event: run`` of a run change, its number as the event's ``id``."""
    data = json.dumps(run_event_data(record), separators=(",", ":"))
    return f"id: {number}\nevent: run\ndata: {data}\n\n"


def format_reload(number: int) -> str:
    """The ``event: reload`` telling a client its view may miss changes: read it again."""
    return f"id: {number}\nevent: reload\ndata: {json.dumps({'after': number})}\n\n"


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


async def event_stream(scheduler: Scheduler, after: int | None = None) -> AsyncIterator[str]:
    """Run and task events as server-sent events, until the scheduler stops.

    Runs come from the store's change feed, so the runs of every replica sharing the
    store show, each ``event: run`` with its change number as ``id``. ``after`` (the
    ``Last-Event-ID`` a reconnecting ``EventSource`` sends) resumes after that change;
    when the store no longer has what came after it, an ``event: reload`` says so
    (and the stream goes on from the latest change). Task state changes are this
    replica's (``event: task``).

    A comment opens the stream (once subscribed) and one is sent every
    :data:`KEEPALIVE_SECONDS` while idle; a client that went away is noticed by the server
    when a send fails, at the latest at the next keepalive, and the generator is closed.
    The stream also ends when :func:`end_event_streams` is called (server shutdown).
    """
    closer = _StreamCloser()
    streams = _open_streams.setdefault(scheduler, set())
    streams.add(closer)
    feed = run_feed(scheduler)
    try:
        async with scheduler.events(types=TaskStateChanged) as events:
            yield ": connected\n\n"
            cursor = after
            idle_since = anyio.current_time()
            while not closer.closed:
                bell = feed.bell
                text = ""
                try:
                    if cursor is None:
                        cursor = await feed.start()
                    batch = await feed.after(cursor)
                except StoreError:  # the feed logs it; the next round tries again
                    batch = None
                if batch is not None and batch.reload_at is not None:
                    cursor = batch.reload_at
                    text = format_reload(cursor)
                elif batch is not None and batch.changes:
                    text = "".join(format_run(n, record) for n, record in batch.changes)
                    cursor = batch.changes[-1][0]
                if not text:
                    wait = idle_since + KEEPALIVE_SECONDS - anyio.current_time()
                    got: object = None
                    with anyio.move_on_after(max(wait, 0)) as scope:
                        closer.scope = scope
                        got = await _next(events, feed, bell if batch is not None else None)
                    closer.scope = None
                    if closer.closed or got is _END:
                        return
                    if isinstance(got, TaskStateChanged):
                        text = format_event(got) or ""
                    elif scope.cancelled_caught:
                        text = ": keepalive\n\n"
                if text:
                    idle_since = anyio.current_time()
                    yield text
    finally:
        streams.discard(closer)


_END = object()


async def _next(
    events: MemoryObjectReceiveStream[TaskStateChanged],
    feed: RunFeed,
    bell: anyio.Event | None,
) -> object:
    """Wait for whichever comes first: a task event (returned), the end of the
    scheduler's events (:data:`_END`), or newer run changes (``None``). Without a
    ``bell`` (the store failed), changes are looked for again after a poll's time."""
    got: list[object] = [None]
    async with anyio.create_task_group() as tg:

        async def task_event() -> None:
            try:
                got[0] = await events.receive()
            except anyio.EndOfStream:
                got[0] = _END
            tg.cancel_scope.cancel()

        async def run_changes() -> None:
            if bell is None:
                await anyio.sleep(POLL_INTERVAL)
            else:
                await feed.wait(bell)
            tg.cancel_scope.cancel()

        tg.start_soon(task_event)
        tg.start_soon(run_changes)
    return got[0]


# --- metrics -----------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RunMetrics:
    """The Prometheus text of ``/metrics``: the fleet's run totals, read from the store
    at each scrape (one read, whatever the number of tasks), and this replica's gauges."""

    async def render(self, scheduler: Scheduler) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        states = dict.fromkeys((str(s) for s in TaskState), 0)
        if scheduler.running:  # from memory: no store read per task
            for state in scheduler.states().values():
                states[str(state)] = states.get(str(state), 0) + 1
        try:
            totals = await scheduler.store.run_totals()
        except StoreError:
            totals = None
        lines = [
            "# HELP xtasks_up Whether the scheduler of the replica that answered is running.",
            "# TYPE xtasks_up gauge",
            f"xtasks_up {1 if scheduler.running else 0}",
            "# HELP xtasks_replica_info The replica that answered this scrape.",
            "# TYPE xtasks_replica_info gauge",
            f'xtasks_replica_info{{replica="{_label(scheduler.replica_id)}"}} 1',
            (
                "# HELP xtasks_fleet_totals_readable 1 when the fleet-wide run totals below were"
                " read from the store, 0 when the read failed (they are left out of this scrape)."
            ),
            "# TYPE xtasks_fleet_totals_readable gauge",
            f"xtasks_fleet_totals_readable {0 if totals is None else 1}",
        ]
        lines += _fleet_lines(totals or [])
        lines += [
            "# HELP xtasks_tasks Registered tasks by state.",
            "# TYPE xtasks_tasks gauge",
        ]
        lines += [f'xtasks_tasks{{state="{_label(s)}"}} {n}' for s, n in sorted(states.items())]
        stats = scheduler.stats()
        lines += [
            "# HELP xtasks_queued_runs Runs ready to start in the replica that answered, waiting for a slot.",
            "# TYPE xtasks_queued_runs gauge",
            f"xtasks_queued_runs {stats.queued}",
            "# HELP xtasks_running_runs Attempts executing now in the replica that answered.",
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


def _fleet_lines(totals: list[RunTotals]) -> list[str]:
    """``xtasks_runs_total`` and the ``xtasks_run_duration_seconds`` histogram."""
    lines = [
        (
            "# HELP xtasks_runs_total Finished runs by task and final status, of every replica"
            " sharing the store (read from it: any replica answers with the fleet's count;"
            " do not sum it over replicas)."
        ),
        "# TYPE xtasks_runs_total counter",
    ]
    by_task: dict[str, list[RunTotals]] = defaultdict(list)
    for item in sorted(totals, key=lambda t: (t.task, str(t.status))):
        by_task[item.task].append(item)
        task, st = _label(item.task), _label(str(item.status))
        lines.append(f'xtasks_runs_total{{task="{task}",status="{st}"}} {item.runs}')
    lines += [
        (
            "# HELP xtasks_run_duration_seconds Time from start to finish of finished runs, by"
            " task, of every replica sharing the store (read from it; do not sum over replicas)."
        ),
        "# TYPE xtasks_run_duration_seconds histogram",
    ]
    bounds = [*(repr(float(b)) for b in RunTotals.BOUNDS), "+Inf"]
    for task, items in by_task.items():
        label = _label(task)
        counts = [sum(column) for column in zip(*(t.buckets for t in items), strict=True)]
        cumulative = 0
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            lines.append(
                f'xtasks_run_duration_seconds_bucket{{task="{label}",le="{bound}"}} {cumulative}'
            )
        seconds = sum(t.seconds for t in items)
        lines.append(f'xtasks_run_duration_seconds_sum{{task="{label}"}} {seconds!r}')
        lines.append(f'xtasks_run_duration_seconds_count{{task="{label}"}} {cumulative}')
    return lines


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
