"""The manager page for people: ``GET {prefix}/`` (the tasks), ``/view/{name}`` (a task),
``/run/{id}`` (a run), ``/history`` (runs, filtered), static assets, sign-in.

Server-rendered HTML (:mod:`._page_html`): every value is escaped, the page loads only
its own stylesheet and script (``static/``), and a Content-Security-Policy forbids inline
script. ``manager.js`` calls the JSON API (``/overview``, ``/tasks``, ``/runs``), draws the
charts as inline SVG, shows times in the browser's zone and follows ``{prefix}/events``,
reconnecting (and reading again what it missed) when the stream drops.

The page and asset routes are ordinary routes of the manager router, so the ``auth``
dependency guards them like the JSON routes. A browser that has no credentials yet gets
401 with a sign-in form (when it asks for HTML); the form posts the token to
``{prefix}/session``, which sets the session cookie :func:`~xtasks_fastapi.bearer_token`
accepts. Sign-in and sign-out are the only routes outside the dependency: the first is
authenticated by the token in its body, the second only clears the cookie.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from xtasks import SchedulerStateError, StoreError, TaskNotFoundError

from ._auth import SESSION_COOKIE, SESSION_SECONDS, sessions_of
from ._page_assets import STATIC_FILES, read_static
from ._page_html import PAGE_SIZE, Page
from ._schemas import RunOut, TaskDetail, TaskSummary

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from fastapi import APIRouter

    from xtasks import Scheduler, TaskInfo

__all__ = ["MAX_LOGIN_BYTES", "add_page_routes"]

_log = logging.getLogger("xtasks.fastapi")

#: Largest sign-in form body accepted.
MAX_LOGIN_BYTES = 4096


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _page_route_class(page: Page) -> type[APIRoute]:
    """A route class answering a browser's 401 with the sign-in form instead of JSON."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def page_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except HTTPException as exc:
                    if not _wants_html(request):
                        raise
                    if exc.status_code == status.HTTP_401_UNAUTHORIZED:
                        return page.login(error=None if page.has_sessions else str(exc.detail))
                    return page.message("Not allowed", str(exc.detail), exc.status_code)

            return page_handler

    return PageRoute


async def _read_form(request: Request) -> dict[str, list[str]] | None:
    """The urlencoded body as fields, or ``None`` when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_LOGIN_BYTES):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BYTES:
            return None
    try:
        return urllib.parse.parse_qs(
            body.decode("ascii", "replace"), keep_blank_values=True, max_num_fields=8
        )
    except ValueError:
        return None


def add_page_routes(
    router: APIRouter,
    scheduler: Scheduler,
    *,
    auth: Callable[..., Any],
    prefix: str,
    origin_of: Callable[[str], str | None],
) -> None:
    """Add the page, its assets, sign-in and sign-out to the manager ``router``."""
    sessions = sessions_of(auth)
    page = Page(prefix, has_sessions=sessions is not None)
    route_class = _page_route_class(page)
    cookie_path = prefix or "/"

    def unavailable(exc: Exception, principal: Any) -> Response:
        if isinstance(exc, StoreError):
            _log.warning("manager page: store error: %s", exc)
            text = f"the task store failed: {exc}; check that it is reachable, then reload"
        else:
            text = str(exc)
        return page.message("Unavailable", text, status.HTTP_503_SERVICE_UNAVAILABLE, principal)

    async def changes_mark() -> int | None:
        """The number of the store's latest run change, read before what a page shows:
        the page's stream starts after it, so a run changed between the page's reads and
        its stream's start still reaches it. ``None`` when the store cannot say (the
        stream then starts from its own latest)."""
        try:
            return (await scheduler.store.run_changes(0, 0)).latest
        except StoreError:
            return None

    async def task_list(principal: Any = Depends(auth)) -> Response:  # noqa: B008
        rows: list[tuple[TaskSummary, TaskInfo]] = []
        after = await changes_mark()
        try:
            for name in sorted(scheduler.tasks):
                try:
                    info: TaskInfo = await scheduler.describe(name)
                except TaskNotFoundError:  # removed meanwhile
                    continue
                rows.append((TaskSummary.from_core(info, origin_of(name)), info))
        except (SchedulerStateError, StoreError) as exc:
            return unavailable(exc, principal)
        return page.task_list(rows, principal, after=after)

    async def task_view(
        name: str,
        limit: int = PAGE_SIZE,
        offset: int = 0,
        principal: Any = Depends(auth),  # noqa: B008
    ) -> Response:
        limit = min(max(limit, 1), 500)
        offset = max(offset, 0)
        after = await changes_mark()
        try:
            info = await scheduler.describe(name)
            history = await scheduler.history(name, limit + 1, offset=offset)
        except TaskNotFoundError as exc:
            return page.message("No such task", str(exc), status.HTTP_404_NOT_FOUND, principal)
        except (SchedulerStateError, StoreError) as exc:
            return unavailable(exc, principal)
        detail = TaskDetail.from_history(
            info, origin_of(name), history[:limit], limit=limit, offset=offset
        )
        return page.task_page(detail, more=len(history) > limit, principal=principal, after=after)

    async def run_view(run_id: str, principal: Any = Depends(auth)) -> Response:  # noqa: B008
        after = await changes_mark()
        try:
            record = await scheduler.get_run(run_id)
        except (SchedulerStateError, StoreError) as exc:
            return unavailable(exc, principal)
        if record is None:
            return page.message(
                "No such run", f"no run with id {run_id!r}", status.HTTP_404_NOT_FOUND, principal
            )
        return page.run_page(RunOut.from_core(record), principal, after=after)

    async def runs_view(principal: Any = Depends(auth)) -> Response:  # noqa: B008
        # The filter runs in the page script, over GET {prefix}/runs.
        after = await changes_mark()
        return page.runs_view(sorted(scheduler.tasks), principal, after=after)

    async def static_file(filename: str) -> Response:
        media_type = STATIC_FILES.get(filename)
        if media_type is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no static file {filename!r}; the manager serves {', '.join(STATIC_FILES)}",
            )
        return Response(
            read_static(filename),
            media_type=media_type,
            headers={
                "Cache-Control": "private, max-age=86400",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            },
        )

    common: dict[str, Any] = {
        "methods": ["GET"],
        "include_in_schema": False,
        "route_class_override": route_class,
    }
    router.add_api_route("/", task_list, response_class=HTMLResponse, **common)
    router.add_api_route("/view/{name}", task_view, response_class=HTMLResponse, **common)
    router.add_api_route("/run/{run_id}", run_view, response_class=HTMLResponse, **common)
    router.add_api_route("/history", runs_view, response_class=HTMLResponse, **common)
    router.add_api_route("/static/{filename}", static_file, **common)

    # Sign-in and sign-out sit outside the auth dependency (see the module docstring).

    def refuse(message: str, status_code: int, request: Request) -> Response:
        if _wants_html(request):
            return page.login(error=message, status_code=status_code)
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        return JSONResponse({"detail": message}, status_code, headers=headers)

    async def sign_in(request: Request) -> Response:
        if sessions is None:
            return refuse(
                "this manager does not use tokens: sign in through the application",
                status.HTTP_404_NOT_FOUND,
                request,
            )
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return refuse(
                "send the token as the form field `token` "
                "(Content-Type: application/x-www-form-urlencoded)",
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                request,
            )
        fields = await _read_form(request)
        if fields is None:
            return refuse(
                f"the sign-in form is limited to {MAX_LOGIN_BYTES} bytes",
                status.HTTP_413_CONTENT_TOO_LARGE,
                request,
            )
        token = (fields.get("token") or [""])[0]
        session = sessions.login(token) if token else None
        if session is None:
            client = request.client.host if request.client is not None else "?"
            _log.warning("manager page: refused a sign-in from %s (wrong token)", client)
            return refuse(
                "that token is not valid: check the token the manager was given",
                status.HTTP_401_UNAUTHORIZED,
                request,
            )
        value, principal = session
        _log.info("manager page: %s signed in", principal.name)
        response = RedirectResponse(prefix + "/", status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=SESSION_SECONDS,
            path=cookie_path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def sign_out(request: Request) -> Response:
        response: Response
        if request.method == "DELETE":
            response = Response(status_code=status.HTTP_204_NO_CONTENT)
        else:
            response = RedirectResponse(prefix + "/", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(
            SESSION_COOKIE,
            path=cookie_path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    router.add_route(prefix + "/session", sign_in, methods=["POST"], include_in_schema=False)
    router.add_route(prefix + "/session", sign_out, methods=["DELETE"], include_in_schema=False)
    router.add_route(
        prefix + "/session/logout", sign_out, methods=["POST"], include_in_schema=False
    )
