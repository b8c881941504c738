"""A real uvicorn server on 127.0.0.1 for tests that need real HTTP (page, event stream).

uvicorn runs in a thread with its own event loop, so a test (sync, or async on any anyio
backend) talks to it over a real socket, as a browser or ``curl`` would.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

import uvicorn

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp

__all__ = ["live_server"]

#: Seconds to wait for the server to start listening, and to stop.
START_TIMEOUT = 20.0


@contextmanager
def live_server(
    app: ASGIApp, *, lifespan: Literal["auto", "on", "off"] = "on", graceful: int = 5
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) and yield its base URL, ``http://127.0.0.1:N``.

    The app's lifespan runs (``FastAPI(lifespan=scheduler.lifespan)`` starts and stops the
    scheduler); leaving the block shuts the server down gracefully (waiting up to
    ``graceful`` seconds for open requests) and joins its thread.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan=lifespan,
        log_level="warning",
        timeout_graceful_shutdown=graceful,
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=serve, name="live-uvicorn", daemon=True)
    thread.start()
    waited = 0.0
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start: {errors or 'thread ended'}")
        if waited > START_TIMEOUT:
            server.should_exit = True
            raise TimeoutError(f"uvicorn did not start within {START_TIMEOUT:g}s")
        thread.join(0.01)  # wait on the thread, not a bare sleep
        waited += 0.01
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT + graceful)
        if thread.is_alive():
            raise RuntimeError("uvicorn did not stop")
        if errors:
            raise RuntimeError(f"uvicorn failed: {errors[0]!r}") from errors[0]
