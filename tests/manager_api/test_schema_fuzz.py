"""Property-based tests of the manager API from its own OpenAPI schema (schemathesis).

Every operation but the endless ``GET /manager/events`` is called over a real uvicorn
server (``live_server``) with a running scheduler and the manager token; inputs are
generated from the schema (derandomized, so a run is repeatable). Checks: no 5xx other than
the documented 503s, and every response matches the status codes, content types and
bodies the schema documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from xtasks import Every, Scheduler, Task
from xtasks_fastapi import bearer_token, manager_router

from .live import live_server

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "fuzz-token-0123456789abcdef"
READ_TOKEN = "fuzz-read-token-0123456789"

#: Examples per operation: about 15 s for the whole schema (10 operations).
MAX_EXAMPLES = 60


async def ok() -> int:
    return 1


async def boom() -> None:
    raise ValueError("boom")


scheduler = Scheduler(plugins=False)
scheduler.add(Task("ok", ok, trigger=Every(hours=1)))
scheduler.add(Task("boom", boom))
scheduler.add(Task("child", ok, depends_on="ok"))
app = FastAPI(lifespan=scheduler.lifespan)
app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN, read_tokens=[READ_TOKEN])))

schema = schemathesis.openapi.from_dict(app.openapi()).exclude(path="/manager/events")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with live_server(app) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_honours_its_schema(case: schemathesis.Case[Any], base_url: str) -> None:
    response = case.call(
        base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
