"""xtasks_fastapi: the ``/manager`` HTTP API for an xtasks scheduler.

Installed with ``pip install xtasks-fastapi`` (FastAPI and uvicorn come with it). Two lines
mount it in a FastAPI application::

    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(os.environ["TOKEN"])))

Request handlers hand work to the scheduler with :func:`tracked_submit`.
:func:`manager_app` and :class:`ManagerServer` are what ``xtasks serve`` runs.
"""

from __future__ import annotations

from ._auth import Principal as Principal
from ._auth import bearer_token as bearer_token
from ._live import end_event_streams as end_event_streams
from ._router import manager_router as manager_router
from ._serve import ManagerServer as ManagerServer
from ._serve import manager_app as manager_app
from ._submit import Submit as Submit
from ._submit import tracked_submit as tracked_submit

__all__ = [
    "ManagerServer",
    "Principal",
    "Submit",
    "bearer_token",
    "end_event_streams",
    "manager_app",
    "manager_router",
    "tracked_submit",
]
