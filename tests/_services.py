"""The PostgreSQL and Redis servers the fleet tests run against.

Locally a missing server skips those tests, with the reason; in CI a skip is a failure
(``tests/conftest.py``), so no backend goes untested there. The addresses default to the
servers CI starts (PostgreSQL on 127.0.0.1:5432 with trust auth and a database ``test``,
Redis on 127.0.0.1:6379) and can be moved with ``XTASKS_TEST_POSTGRES_URL`` and
``XTASKS_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["fresh_store", "postgres_url", "redis_url"]

_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
_REDIS = "redis://127.0.0.1:6379/0"


def _reachable(url: str, default_port: int) -> str | None:
    """Why the server of ``url`` cannot be reached, or ``None`` when it answers a TCP connect."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"no server at {host}:{port} ({exc})"
    return None


def postgres_url() -> str:
    """The PostgreSQL server's URL, or a skip saying why there is none."""
    return _server("PostgreSQL", "XTASKS_TEST_POSTGRES_URL", _POSTGRES, 5432)


def redis_url() -> str:
    """The Redis server's URL, or a skip saying why there is none."""
    return _server("Redis", "XTASKS_TEST_REDIS_URL", _REDIS, 6379)


def _server(name: str, variable: str, default: str, default_port: int) -> str:
    url = os.environ.get(variable, default)
    problem = _reachable(url, default_port)
    if problem is not None:
        pytest.skip(f"{name}: {problem}; set {variable}")
    return url


@contextmanager
def fresh_store(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store of ``kind`` (``sqlite``, ``postgres``, ``redis``):
    a file in ``tmp_path``, a schema or a key prefix of its own, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
    elif kind == "postgres":
        from tests.stores._postgres import isolated_schema

        with isolated_schema() as (server, schema):
            yield f"{server}?schema={schema}"
    else:
        from tests.stores._redis import redis_prefix

        with redis_prefix() as prefix:
            yield f"{redis_url()}?prefix={prefix}"
