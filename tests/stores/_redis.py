"""A Redis key prefix per test: tests run repeatedly, and beside other runs on one server."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis

from tests._services import redis_url

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; its keys are deleted on the way out (SCAN + DEL)."""
    prefix = "xt-test-" + uuid.uuid4().hex[:12]
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(redis_url(), socket_timeout=10) as client:
            keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
