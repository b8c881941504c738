"""The built-in backends' URL factories: ``memory://``, ``sqlite:///path.db``,
``postgresql://`` (or ``postgres://``) and ``redis://host:6379/0`` (``rediss://`` for TLS).

Each parses its own URL and options, beside nothing else: the registry only picks the
factory by scheme. Drivers are imported when a URL asks for them, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .._errors import ConfigError
from ._registry import RETENTION_OPTIONS, query_options, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..abc import Store

__all__ = [
    "MEMORY_EXAMPLE",
    "MEMORY_OPTIONS",
    "POSTGRES_EXAMPLE",
    "POSTGRES_LIBPQ_OPTIONS",
    "POSTGRES_OPTIONS",
    "REDIS_EXAMPLE",
    "REDIS_OPTIONS",
    "SQLITE_EXAMPLE",
    "SQLITE_OPTIONS",
    "memory_store",
    "postgres_store",
    "redis_store",
    "sqlite_store",
]

MEMORY_EXAMPLE = "memory://"
SQLITE_EXAMPLE = "sqlite:///path.db"
#: Query parameters ``sqlite:///x.db?...`` accepts, with their types.
SQLITE_OPTIONS = {**RETENTION_OPTIONS, "lease_ttl": float, "busy_timeout": float}
#: Query parameters ``memory://?...`` accepts: retention, as SQLite's.
MEMORY_OPTIONS = RETENTION_OPTIONS
POSTGRES_EXAMPLE = "postgresql://user:pw@host/db"
#: libpq's connection parameters a ``postgresql://`` URL may carry in its query (a Unix
#: socket as ``?host=/run/postgresql``, TLS, the name shown in ``pg_stat_activity``...):
#: they go to the server connection as given.
POSTGRES_LIBPQ_OPTIONS = (
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "channel_binding",
    "gssencmode",
    "target_session_attrs",
    "application_name",
    "options",
)
#: Query parameters ``postgresql://...?...`` accepts: the store's own, then libpq's.
POSTGRES_OPTIONS: dict[str, Callable[[str], Any]] = {
    **RETENTION_OPTIONS,
    "schema": str,
    "pool_size": int,
    "lease_ttl": float,
    "connect_timeout": float,
    **dict.fromkeys(POSTGRES_LIBPQ_OPTIONS, str),
}
_POSTGRES_OWN = frozenset(
    {*RETENTION_OPTIONS, "schema", "pool_size", "lease_ttl", "connect_timeout"}
)
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


def postgres_store(url: str) -> Store:
    """``postgresql://user:password@host:5432/db`` (or ``postgres://``), with options
    ``?schema=xtasks&pool_size=4&lease_ttl=10&connect_timeout=5&max_runs_per_task=1000``
    ``&max_age=86400``, and libpq's (:data:`POSTGRES_LIBPQ_OPTIONS`: ``sslmode=require``,
    ``host=/run/postgresql``...). Needs ``pip install 'xtasks[postgres]'``."""
    base, _, query = url.partition("?")
    options = query_options(url, query, POSTGRES_OPTIONS)
    libpq = {key: options.pop(key) for key in list(options) if key not in _POSTGRES_OWN}
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"the store {redact_url(url)!r} needs psycopg: pip install 'xtasks[postgres]' ({exc})",
            field="store",
        ) from None
    conninfo = f"{base}?{urlencode(libpq)}" if libpq else base
    return PostgresStore(conninfo, **options)


def redis_store(url: str) -> Store:
    """``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS), with options
    ``?prefix=xtasks&pool_size=4&lease_ttl=10&connect_timeout=5&socket_timeout=10``
    ``&max_runs_per_task=1000&max_age=86400``; redis-py is imported here, not before."""
    base, _, query = url.partition("?")
    options = query_options(url, query, REDIS_OPTIONS)
    from .redis import RedisStore

    return RedisStore(base, **options)
