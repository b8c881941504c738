"""Store backends, chosen by URL: ``memory://`` (more in later releases).

Each backend lives in its own module and is the only one to import its driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import ConfigError

if TYPE_CHECKING:
    from ..abc import Store

__all__ = ["open_store"]

_SCHEMES = ("memory://",)


def open_store(url: str) -> Store:
    """Return the store for ``url`` (not yet opened: the scheduler opens it).

    :raises ConfigError: the URL's scheme is not one xtasks knows.
    """
    if url == "memory://" or url.startswith("memory://"):
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        if path == url or not path:
            raise ConfigError(
                f"bad SQLite store URL {url!r}; expected sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db",
                field="store",
            )
        from .sqlite import SQLiteStore

        return SQLiteStore(path)
    raise ConfigError(f"unknown store URL {url!r}; supported: {', '.join(_SCHEMES)}", field="store")
