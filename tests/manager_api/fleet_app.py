"""An app for the two-process test of the fleet's live view: a replica per process,
configured from the environment (``XTASKS_TEST_STORE``, ``XTASKS_TEST_REPLICA``,
``XTASKS_TEST_TOKEN``), served
by ``python -m uvicorn tests.manager_api.fleet_app:app``."""

from __future__ import annotations

import os

from fastapi import FastAPI

from xtasks import Scheduler, Task
from xtasks_fastapi import bearer_token, manager_router


async def ok() -> str:
    return f"done by {os.getpid()}"


scheduler = Scheduler(
    os.environ["XTASKS_TEST_STORE"], plugins=False, replica_id=os.environ["XTASKS_TEST_REPLICA"]
)
scheduler.add(Task("ok", ok))
app = FastAPI(lifespan=scheduler.lifespan)
app.include_router(manager_router(scheduler, auth=bearer_token(os.environ["XTASKS_TEST_TOKEN"])))
