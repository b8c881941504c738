"""Store backends, chosen by URL: ``memory://`` and ``sqlite:///path.db`` (PostgreSQL and
Redis come in later releases).

Each backend lives in its own module and is the only one to import its driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .._errors import ConfigError

if TYPE_CHECKING:
    from ..abc import Store

__all__ = ["open_store"]

_SCHEMES = ("memory://", "sqlite:///path.db")
#: Query parameters ``sqlite:///x.db?...`` accepts, with their types.
_SQLITE_OPTIONS = {
    "max_runs_per_task": int,
    "max_age": float,
    "lease_ttl": float,
    "busy_timeout": float,
}


def open_store(url: str) -> Store:
    """Return the store for ``url`` (not yet opened: the scheduler opens it).

    :raises ConfigError: the URL's scheme is not one xtasks knows.
    """
    if url == "memory://" or url.startswith("memory://"):
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:"):
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        if not url.startswith("sqlite:///") or not path:
            raise ConfigError(
                f"bad SQLite store URL {url!r}; expected sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db (options: ?max_runs_per_task=1000&max_age=...)",
                field="store",
            )
        from .sqlite import SQLiteStore

        return SQLiteStore(path, **_options(url, query))
    raise ConfigError(f"unknown store URL {url!r}; supported: {', '.join(_SCHEMES)}", field="store")


def _options(url: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        kind = _SQLITE_OPTIONS.get(key)
        if kind is None:
            known = ", ".join(_SQLITE_OPTIONS)
            raise ConfigError(f"unknown option {key!r} in {url!r}; known: {known}", field="store")
        try:
            options[key] = kind(values[-1])
        except ValueError:
            raise ConfigError(
                f"option {key!r} in {url!r} must be a {kind.__name__}, got {values[-1]!r}",
                field="store",
            ) from None
    return options
