"""xtasks_fastapi: the ``/manager`` HTTP API for an xtasks scheduler.

Two lines mount it in a FastAPI application::

    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(os.environ["TOKEN"])))
"""

from __future__ import annotations

from ._auth import Principal as Principal
from ._auth import bearer_token as bearer_token
from ._router import manager_router as manager_router

__all__ = ["Principal", "bearer_token", "manager_router"]
