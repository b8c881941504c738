"""The Celery app the test worker runs: its tasks, and the contract's bodies by the names
xtasks sends them under. Configured from the environment the ``celery_worker`` fixture
sets, so that the worker process and the tests agree on the broker and key prefix."""

# mypy: disable-error-code="untyped-decorator"
# (Celery has no type hints: its decorator returns an untyped task.)
from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from xtasks.testing import _executor_checks as contract

URL = os.environ.get("XTASKS_TEST_CELERY_URL", "redis://127.0.0.1:6379/13")
#: Isolates one test session's queues, results and channels from another's.
PREFIX = os.environ.get("XTASKS_TEST_CELERY_PREFIX", "xtasks-test-")
QUEUE = f"{PREFIX}celery"

app = Celery("xtasks_test", broker=URL, backend=URL, set_as_current=False)
app.conf.update(
    task_track_started=True,
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(URL)


for _body in ("echo", "fail", "block"):
    app.task(name=f"{contract.__name__}.{_body}")(getattr(contract, _body))


@app.task(name="tests.celery_workers._app.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.celery_workers._app.explode")
def explode(message: str) -> None:
    _explode_deeper(message)


def _explode_deeper(message: str) -> None:
    raise KeyError(message)


@app.task(name="tests.celery_workers._app.record", bind=True)
def record(self: Any, key: str) -> str:
    """Append this Celery task's id to the list ``key``: what the worker received."""
    task_id = str(self.request.id)
    _redis().rpush(f"{PREFIX}{key}", task_id)
    return task_id


@app.task(name="tests.celery_workers._app.hold", bind=True)
def hold(self: Any, key: str, seconds: float) -> int:
    """Say it runs (``{key}:running`` holds the worker's pid), then wait for
    ``{key}:release`` for at most ``seconds``."""
    client = _redis()
    client.set(f"{PREFIX}{key}:running", os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not client.exists(f"{PREFIX}{key}:release"):
        time.sleep(0.02)
    return os.getpid()


@app.task(name="tests.celery_workers._app.flaky", bind=True)
def flaky(self: Any, key: str, failures: int) -> str:
    """Fail the first ``failures`` times it is called for ``key``; record each task id."""
    client = _redis()
    client.rpush(f"{PREFIX}{key}", str(self.request.id))
    if client.llen(f"{PREFIX}{key}") <= failures:
        raise RuntimeError(f"attempt {client.llen(f'{PREFIX}{key}')} fails")
    return "fine"
