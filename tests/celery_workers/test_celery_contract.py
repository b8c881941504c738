"""The Celery executor passes the executor contract (``xtasks.testing``) against a real
worker: result, error with the worker's traceback, timeout, cancel, attempts at once,
and close while an attempt runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xtasks.testing import EXECUTOR_CHECKS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import redis

    from tests.celery_workers.conftest import Worker

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", EXECUTOR_CHECKS, ids=lambda check: check.__name__)
async def test_the_celery_executor_passes_the_contract(
    check: Callable[..., Awaitable[None]], celery_worker: Worker, results_redis: redis.Redis
) -> None:
    from tests.celery_workers._app import app
    from xtasks_celery import CeleryExecutor

    await check(lambda: CeleryExecutor(app, slots=4))
