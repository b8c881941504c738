"""``manager_router``: see and steer a scheduler's tasks over HTTP."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from xtasks import (
    AuditWriteError,
    RunStatus,
    SchedulerStateError,
    StoreError,
    TaskNotFoundError,
    TaskStateError,
)

from ._auth import _anonymous, write_guard
from ._live import (
    PROMETHEUS_CONTENT_TYPE,
    RunMetrics,
    event_stream,
    limit_body,
)
from ._overview import MAX_HORIZON_HOURS, overview
from ._page import add_page_routes
from ._schemas import (
    AuditOut,
    AuditPage,
    ErrorDetail,
    HealthOut,
    Overview,
    RunAccepted,
    RunOut,
    RunPage,
    TaskDetail,
    TaskStateOut,
    TaskSummary,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from xtasks import Scheduler

__all__ = ["manager_router"]

_log = logging.getLogger("xtasks.fastapi")

#: Seconds ``GET /health`` waits for the store before calling it unreachable.
HEALTH_STORE_TIMEOUT = 5.0

#: Largest ``offset`` a page accepts: far beyond any history, and well inside the 64-bit
#: integers stores take (a larger value used to reach the store and fail there: a 500).
MAX_OFFSET = 10**9

Limit = Annotated[int, Query(ge=1, le=500, description="at most this many records")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="skip this many of the newest records")
]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail}}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": ErrorDetail}}
_AUTH: dict[int | str, dict[str, Any]] = {401: {"model": ErrorDetail}}
_WRITE: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    403: {"model": ErrorDetail},
    413: {"model": ErrorDetail},
}


@contextmanager
def _http_errors(request: Request | None = None) -> Iterator[None]:
    """Turn the scheduler's errors into HTTP errors carrying their message.

    :param request: the request being answered, so a hint can name the route to call next.
    """
    try:
        yield
    except TaskNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except TaskStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, _refused(exc, request)) from None
    except SchedulerStateError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except StoreError as exc:
        _log.warning("manager API: store error: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the task store failed: {exc}; check that it is reachable, then retry",
        ) from None


def _refused(exc: TaskStateError, request: Request | None) -> str:
    """A 409's message in HTTP terms: the core's own message names a Python call."""
    resume = "its resume route"
    if request is not None:
        base, _, _ = request.url.path.rpartition("/")  # .../tasks/{name}/run -> .../tasks/{name}
        resume = f"POST {base}/resume"
    return f"task {exc.task!r} is {exc.state}; resume it ({resume}), then run it again"


def _not_recorded(exc: AuditWriteError) -> str:
    """The note an answer carries when its action was done but not audited (the core
    has logged it already)."""
    return f"not recorded: {exc.reason}"


def _actor(principal: Any, request: Request) -> str:
    """Who acted, for the audit trail: the principal's name and the client's address."""
    name = getattr(principal, "name", None) or type(principal).__name__
    client = request.client.host if request.client is not None else "unknown"
    return f"{name}@{client}"


def manager_router(
    scheduler: Scheduler,
    *,
    auth: Callable[..., Any] | None,
    prefix: str = "/manager",
) -> APIRouter:
    """An ``APIRouter`` to see and steer ``scheduler``: ``app.include_router(...)``.

    :param auth: a FastAPI dependency returning a principal with a ``can_write``
        attribute (such as :class:`~xtasks_fastapi.Principal`), typically
        :func:`~xtasks_fastapi.bearer_token`. It guards every route; principals that
        may not write get 403 on run, pause, resume and cancel. ``None`` switches
        authentication off, which must be said explicitly and logs a warning.
    :param prefix: where the routes live.
    """
    if auth is None:
        _log.warning(
            "manager API has no authentication (auth=None): anyone who can reach %s "
            "may run, pause and cancel tasks",
            prefix or "/",
        )
        auth = _anonymous
    elif not callable(auth):
        raise TypeError(
            f"auth must be a FastAPI dependency (such as bearer_token(token)) or None, got {auth!r}"
        )
    # Write routes take the principal as a parameter (for the audit trail); the same
    # dependency object is used everywhere so FastAPI resolves it once per request.
    # (A default value, not an annotation: annotations are strings here, and FastAPI
    # could not resolve a local name in them.)
    writer_principal = Depends(write_guard(auth))
    writer = [Depends(limit_body)]
    router = APIRouter(prefix=prefix, tags=["xtasks"], dependencies=[Depends(auth)])
    metrics = RunMetrics()

    def origin_of(name: str) -> str | None:
        origin = scheduler.task_origins.get(name)
        return origin.describe() if origin is not None else None

    @router.get(
        "/tasks",
        response_model=list[TaskSummary],
        responses={**_AUTH, **_UNAVAILABLE},
        summary="List every task and where it stands",
    )
    async def list_tasks() -> list[TaskSummary]:
        out = []
        with _http_errors():
            for name in sorted(scheduler.tasks):
                try:
                    info = await scheduler.describe(name)
                except TaskNotFoundError:  # removed meanwhile
                    continue
                out.append(TaskSummary.from_core(info, origin_of(name)))
        return out

    @router.get(
        "/tasks/{name}",
        response_model=TaskDetail,
        responses={**_AUTH, **_NOT_FOUND, **_UNAVAILABLE},
        summary="A task's settings, state and a page of its history",
    )
    async def get_task(name: str, limit: Limit = 50, offset: Offset = 0) -> TaskDetail:
        with _http_errors():
            info = await scheduler.describe(name)
            history = await scheduler.history(name, limit, offset=offset)
        return TaskDetail.from_history(info, origin_of(name), history, limit=limit, offset=offset)

    @router.post(
        "/tasks/{name}/run",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=RunAccepted,
        response_model_exclude_none=True,
        dependencies=writer,
        responses={**_WRITE, **_NOT_FOUND, 409: {"model": ErrorDetail}, **_UNAVAILABLE},
        summary="Run a task now (after fresh runs of its dependencies)",
    )
    async def run_task(
        name: str, request: Request, principal: Any = writer_principal
    ) -> RunAccepted:
        with _http_errors(request):
            try:
                handle = await scheduler.trigger(name, by=_actor(principal, request))
            except AuditWriteError as exc:  # accepted all the same: a retry would run twice
                assert exc.run_id is not None
                return RunAccepted(run_id=exc.run_id, task=name, audit=_not_recorded(exc))
        return RunAccepted(run_id=handle.id, task=name)

    async def change_state(
        name: str, action: Callable[..., Any], request: Request, principal: Any
    ) -> TaskStateOut:
        note: str | None = None
        with _http_errors():
            try:
                await action(name, by=_actor(principal, request))
            except AuditWriteError as exc:  # the action stood; only its record is missing
                note = _not_recorded(exc)
            info = await scheduler.describe(name)
        return TaskStateOut(name=name, state=info.state, audit=note)

    @router.delete(
        "/tasks/{name}",
        response_model=TaskStateOut,
        response_model_exclude_none=True,
        dependencies=writer,
        responses={**_WRITE, **_NOT_FOUND, **_UNAVAILABLE},
        summary="Cancel a task: no more fires, its queued and running runs cancelled",
        description="The task and its history stay visible; `resume` re-activates it.",
    )
    async def cancel_task(
        name: str, request: Request, principal: Any = writer_principal
    ) -> TaskStateOut:
        return await change_state(name, scheduler.cancel, request, principal)

    @router.post(
        "/tasks/{name}/pause",
        response_model=TaskStateOut,
        response_model_exclude_none=True,
        dependencies=writer,
        responses={**_WRITE, **_NOT_FOUND, **_UNAVAILABLE},
        summary="Stop firing a task; runs already going finish",
    )
    async def pause_task(
        name: str, request: Request, principal: Any = writer_principal
    ) -> TaskStateOut:
        return await change_state(name, scheduler.pause, request, principal)

    @router.post(
        "/tasks/{name}/resume",
        response_model=TaskStateOut,
        response_model_exclude_none=True,
        dependencies=writer,
        responses={**_WRITE, **_NOT_FOUND, **_UNAVAILABLE},
        summary="Fire a paused or cancelled task again from now on",
    )
    async def resume_task(
        name: str, request: Request, principal: Any = writer_principal
    ) -> TaskStateOut:
        return await change_state(name, scheduler.resume, request, principal)

    @router.get(
        "/runs",
        response_model=RunPage,
        responses={**_AUTH, **_UNAVAILABLE},
        summary="Run records, newest first, filtered by status and task",
    )
    async def list_runs(
        status_: Annotated[
            list[RunStatus] | None,
            Query(alias="status", description="only runs in these statuses (repeatable)"),
        ] = None,
        task: Annotated[str | None, Query(description="only this task's runs")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> RunPage:
        with _http_errors():
            runs = await scheduler.store.list_runs(
                task=task, statuses=status_ or None, limit=limit, offset=offset
            )
        return RunPage(runs=[RunOut.from_core(r) for r in runs], limit=limit, offset=offset)

    @router.get(
        "/runs/{run_id}",
        response_model=RunOut,
        responses={**_AUTH, **_NOT_FOUND, **_UNAVAILABLE},
        summary="One run's latest record",
    )
    async def get_run(run_id: str) -> RunOut:
        with _http_errors():
            record = await scheduler.get_run(run_id)
        if record is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no run with id {run_id!r}; list runs at {prefix}/runs",
            )
        return RunOut.from_core(record)

    @router.get(
        "/overview",
        response_model=Overview,
        responses={**_AUTH, **_UNAVAILABLE},
        summary="Every task at a glance: its last 24 hours hour by hour, its coming fires",
        description="What the page's charts draw: per task, the runs scheduled in each of "
        "the last 24 hours and how many failed, and the fires its trigger plans within "
        "`hours` from now.",
    )
    async def get_overview(
        hours: Annotated[
            float,
            Query(gt=0, le=MAX_HORIZON_HOURS, description="how far ahead to list the fires"),
        ] = 6,
    ) -> Overview:
        with _http_errors():
            return await overview(scheduler, hours)

    @router.get(
        "/audit",
        response_model=AuditPage,
        responses={**_AUTH, **_UNAVAILABLE},
        summary="Manual actions (run, pause, resume, cancel): who, what, when, outcome",
        description="Newest first. Actions taken through this API and the page are "
        "recorded with the principal's name and the client address.",
    )
    async def list_audit(
        task: Annotated[str | None, Query(description="only actions on this task")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> AuditPage:
        with _http_errors():
            records = await scheduler.audit(limit, offset=offset, task=task)
        return AuditPage(
            records=[AuditOut.model_validate(r) for r in records], limit=limit, offset=offset
        )

    @router.get(
        "/health",
        response_model=HealthOut,
        responses={**_AUTH, 503: {"model": HealthOut}},
        summary="Store reachable, degraded plugins, scheduler running, loop and timer lag",
    )
    async def health(response: Response) -> HealthOut:
        store_error: str | None = None
        try:
            with anyio.fail_after(HEALTH_STORE_TIMEOUT):
                await scheduler.store.get_run("__health__")
        except TimeoutError:
            store_error = f"the store did not answer within {HEALTH_STORE_TIMEOUT:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            store_error = f"{type(exc).__name__}: {exc}"
        running = scheduler.running
        stats = scheduler.stats()
        reachable = store_error is None
        if reachable and not stats.store_writable:
            store_error = f"the store cannot write: {stats.store_error}"
        ok = running and store_error is None
        if not ok:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return HealthOut.from_stats(
            stats,
            ok=ok,
            running=running,
            store_reachable=reachable,
            store_error=store_error,
            degraded_plugins=[origin.describe() for origin in scheduler.degraded],
        )

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`event: run` and `event: task` with JSON data",
            },
            **_AUTH,
        },
        summary="Server-sent events of run changes (every replica's) and task state changes",
        description=(
            "`event: run` carries a run's id, task, status, cause, times, attempts, error "
            "and reason, with the store's change number as the event's `id`: the runs of "
            "every replica sharing the store show, each once per change seen (a run that "
            "changes faster than the stream polls shows its latest state). A reconnecting "
            "client sends `Last-Event-ID` (browsers' EventSource does it by itself; or "
            "`?after=<id>`) and the stream resumes after that change; when the store no "
            "longer keeps what came after it, `event: reload` tells the client to read its "
            "view again. `event: task` carries a task's name and state. A `: keepalive` "
            "comment comes every 15 s; the stream ends when the scheduler stops."
        ),
    )
    async def events(
        after: int | None = Query(
            None, ge=0, description="resume after this change number (as Last-Event-ID)"
        ),
        last_event_id: str | None = Header(None, include_in_schema=False),
    ) -> StreamingResponse:
        if after is None and last_event_id:
            try:
                after = int(last_event_id)
            except ValueError:
                after = -1
            if after < 0:
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST,
                    f"Last-Event-ID {last_event_id[:40]!r} is not a change number this "
                    "stream sent; connect again without it",
                )
        return StreamingResponse(
            event_stream(scheduler, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"},
            **_AUTH,
        },
        summary="Prometheus metrics: runs by task and status, durations, task states",
    )
    async def get_metrics() -> Response:
        text = await metrics.render(scheduler)
        return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)

    # The page for people, its assets and sign-in: _page.py (routes), _page_html.py (HTML),
    # _page_assets.py (its static files).
    add_page_routes(router, scheduler, auth=auth, prefix=prefix, origin_of=origin_of)

    return router
