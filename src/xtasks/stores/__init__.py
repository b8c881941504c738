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
    raise ConfigError(f"unknown store URL {url!r}; supported: {', '.join(_SCHEMES)}", field="store")
