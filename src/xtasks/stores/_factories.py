"""The built-in backends' URL factories: ``memory://``, ``sqlite:///path.db`` and
``redis://host:6379/0`` (``rediss://`` for TLS).

Each parses its own URL and options, beside nothing else: the registry only picks the
factory by scheme. Drivers are imported when a URL asks for them, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._registry import RETENTION_OPTIONS, query_options, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..abc import Store

__all__ = [
    "MEMORY_EXAMPLE",
    "MEMORY_OPTIONS",
    "REDIS_EXAMPLE",
    "REDIS_OPTIONS",
    "SQLITE_EXAMPLE",
    "SQLITE_OPTIONS",
    "memory_store",
    "redis_store",
    "sqlite_store",
]

MEMORY_EXAMPLE = "memory://"
SQLITE_EXAMPLE = "sqlite:///path.db"
#: Query parameters ``sqlite:///x.db?...`` accepts, with their types.
SQLITE_OPTIONS = {**RETENTION_OPTIONS, "lease_ttl": float, "busy_timeout": float}
#: Query parameters ``memory://?...`` accepts: retention, as SQLite's.
MEMORY_OPTIONS = RETENTION_OPTIONS
REDIS_EXAMPLE = "redis://host:6379/0"
#: Query parameters ``redis://host/0?...`` accepts, with their types.
REDIS_OPTIONS: dict[str, Callable[[str], Any]] = {
    **RETENTION_OPTIONS,
    "prefix": str,
    "pool_size": int,
    "lease_ttl": float,
    "connect_timeout": float,
    "socket_timeout": float,
}


def memory_store(url: str) -> Store:
    """``memory://``: everything in this process, gone when it exits; with options
    ``?max_runs_per_task=1000&max_age=86400`` (history is bounded: 1,000 finished runs
    per task by default)."""
    from .memory import MemoryStore

    _, _, query = url.partition("?")
    return MemoryStore(**query_options(url, query, MEMORY_OPTIONS))


def sqlite_store(url: str) -> Store:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with options
    ``?max_runs_per_task=1000&max_age=86400&lease_ttl=10&busy_timeout=5``."""
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    if not url.startswith("sqlite:///") or not path:
        raise ConfigError(
            f"bad SQLite store URL {redact_url(url)!r}; expected sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db (options: ?max_runs_per_task=1000&max_age=...)",
            field="store",
        )
    from .sqlite import SQLiteStore

    return SQLiteStore(path, **query_options(url, query, SQLITE_OPTIONS))


def redis_store(url: str) -> Store:
    """``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS), with options
    ``?prefix=xtasks&pool_size=4&lease_ttl=10&connect_timeout=5&socket_timeout=10``
    ``&max_runs_per_task=1000&max_age=86400``; redis-py is imported here, not before."""
    base, _, query = url.partition("?")
    options = query_options(url, query, REDIS_OPTIONS)
    from .redis import RedisStore

    return RedisStore(base, **options)
