"""The manager as a server of its own: what ``xtasks serve`` and ``xtasks demo`` run.

The ``xtasks`` command lives in the core, which imports no web code; it asks this module
for an app and a server, and keeps the terminal (signals, the printed URL and token).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from ._live import end_event_streams
from ._router import manager_router

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from xtasks import Scheduler

__all__ = ["ManagerServer", "manager_app"]

#: Seconds the server waits for open requests when stopping, before cancelling them.
HTTP_SHUTDOWN_TIMEOUT = 10


def manager_app(
    scheduler: Scheduler, *, auth: Callable[..., Any] | None, prefix: str = "/manager"
) -> FastAPI:
    """A FastAPI app that runs ``scheduler`` (its lifespan) and serves its manager.

    ``/`` redirects to the page. For an application of your own, mount
    :func:`~xtasks_fastapi.manager_router` instead.
    """
    app = FastAPI(title="xtasks manager", lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=auth, prefix=prefix))

    async def root() -> RedirectResponse:
        return RedirectResponse(prefix + "/")

    app.add_api_route("/", root, include_in_schema=False)
    return app


class ManagerServer(uvicorn.Server):
    """uvicorn serving :func:`manager_app`, stopped by its owner rather than by signals.

    Stopping ends the open event streams first: uvicorn waits for open responses
    *before* the lifespan stops the scheduler, and an endless stream would hold it.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        app: FastAPI,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        on_listening: Callable[[int], None] | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # the process's own logging set-up; no access log of tokens
            timeout_graceful_shutdown=HTTP_SHUTDOWN_TIMEOUT,
        )
        super().__init__(config)
        self._scheduler = scheduler
        self._on_listening = on_listening

    def stop(self, *, now: bool = False) -> None:
        """Stop gracefully (runs finish, records are flushed); ``now`` skips the wait."""
        self.should_exit = True
        if now:
            self.force_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the owner handles signals and calls stop()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_listening is not None:
            self._on_listening(self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets: Any = None) -> None:
        end_event_streams(self._scheduler)
        await super().shutdown(sockets)
