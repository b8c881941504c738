"""Store backends, chosen by URL scheme: ``memory://`` and ``sqlite:///path.db`` built in;
more (PostgreSQL, Redis, a third party's) come from plugins through ``xtasks_add_stores``.

Each backend lives in its own module and is the only one to import its driver. URLs are
shown only through :func:`redact_url`: they may carry a password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._registry import StoreFactory, StoreRegistry, builtin_stores, redact_url

if TYPE_CHECKING:
    from ..abc import Store

__all__ = ["StoreFactory", "StoreRegistry", "builtin_stores", "open_store", "redact_url"]


def open_store(url: str, stores: StoreRegistry | None = None) -> Store:
    """Return the store for ``url`` (not yet opened: the scheduler opens it).

    :param url: e.g. ``"sqlite:///xtasks.db?max_runs_per_task=500"``.
    :param stores: the schemes to choose from; a scheduler passes those its plugins
        registered. By default, the built-in ones (``memory``, ``sqlite``).
    :raises ConfigError: the URL's scheme is not registered, or its backend refuses
        the URL; the message shows the URL redacted.
    """
    return (stores if stores is not None else builtin_stores()).open(url)
