"""A real Celery worker (a subprocess, threads pool) on the machine's Redis, as broker and
result backend, for the Celery executor's tests.

The worker and these tests share a key prefix made for this session, so two sessions
on one Redis never see each other's queues, results or channels. After each test no
result channel of the session is still subscribed: nothing leaks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._services import redis_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

ROOT = Path(__file__).resolve().parents[2]
#: Generous for a loaded machine; only reached when something is broken.
READY_WITHIN = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/celery_workers/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.external_service)


@pytest.fixture
def anyio_backend() -> str:
    """The Celery executor reads Redis with redis.asyncio: asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session")
def celery_env() -> Iterator[dict[str, str]]:
    """The broker URL (Redis database 13) and this session's key prefix, in the
    environment of this process (``tests.celery_workers._app`` reads it at import) and of the
    workers."""
    base = redis_url().rsplit("/", 1)[0]
    env = {
        "XTASKS_TEST_CELERY_URL": f"{base}/13",
        "XTASKS_TEST_CELERY_PREFIX": f"xtasks-test-{uuid.uuid4().hex[:8]}-",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    sys.modules.pop("tests.celery_workers._app", None)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class Worker:
    """A Celery worker process and its name."""

    process: subprocess.Popen[bytes]
    hostname: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker and its pool: no goodbye, no result written."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL after 10 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()


def start_worker(
    env: dict[str, str], tmp: Path, *, name: str, queues: str, concurrency: int = 10
) -> Worker:
    """Start ``celery worker`` on ``queues`` and return once it answers a ping."""
    from tests.celery_workers._app import app

    hostname = f"{name}-{uuid.uuid4().hex[:6]}@xtasks-test"
    log = tmp / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_workers._app",
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        f"--queues={queues}",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, hostname, log)
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{log.read_text()[-4000:]}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return worker
    worker.stop()
    raise RuntimeError(f"the Celery worker did not answer a ping:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def celery_worker(
    celery_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One worker for the session, on the default queue of this session."""
    from tests.celery_workers._app import QUEUE

    worker = start_worker(celery_env, tmp_path_factory.mktemp("celery"), name="w1", queues=QUEUE)
    yield worker
    worker.stop()


@pytest.fixture
def results_redis(celery_env: dict[str, str]) -> Iterator[redis.Redis]:
    """A client on the broker's database; after the test, no result channel of this
    session may still be subscribed."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(celery_env["XTASKS_TEST_CELERY_URL"])
    yield client
    prefix = celery_env["XTASKS_TEST_CELERY_PREFIX"]
    pattern = f"{prefix}celery-task-meta-*"
    deadline = time.monotonic() + 5
    channels = client.pubsub_channels(pattern)
    while channels and time.monotonic() < deadline:  # an unsubscribe on its way
        time.sleep(0.05)
        channels = client.pubsub_channels(pattern)
    client.close()
    assert not channels, f"result channels left subscribed: {channels}"
