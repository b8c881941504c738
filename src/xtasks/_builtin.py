"""The core's own plugin: registered before any entry point, through the same hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._alerter import LoggingAlerter
from .hookspecs import hookimpl
from .stores._factories import (
    MEMORY_EXAMPLE,
    POSTGRES_EXAMPLE,
    REDIS_EXAMPLE,
    SQLITE_EXAMPLE,
    memory_store,
    postgres_store,
    redis_store,
    sqlite_store,
)

if TYPE_CHECKING:
    from .hookspecs import RegisterAlerter, RegisterStore

__all__ = ["xtasks_add_alerters", "xtasks_add_stores"]


@hookimpl
def xtasks_add_alerters(register: RegisterAlerter) -> None:
    """``kind: log`` in YAML: one more logging alerter, e.g. on another logger."""
    register("log", _logging_alerter)


@hookimpl
def xtasks_add_stores(register: RegisterStore) -> None:
    """``memory://`` and ``sqlite:///path.db``, which need nothing installed;
    ``postgresql://`` (``postgres://``), ``redis://`` and ``rediss://``, whose drivers (the
    ``postgres`` and ``redis`` extras) are imported when such a URL is opened."""
    register("memory", memory_store, example=MEMORY_EXAMPLE)
    register("sqlite", sqlite_store, example=SQLITE_EXAMPLE)
    register("postgresql", postgres_store, example=POSTGRES_EXAMPLE)
    register("postgres", postgres_store, example="postgres://user:pw@host/db")
    register("redis", redis_store, example=REDIS_EXAMPLE)
    register("rediss", redis_store, example="rediss://host:6380/0")


def _logging_alerter(logger: str = "xtasks.alerts") -> LoggingAlerter:
    import logging

    return LoggingAlerter(logging.getLogger(logger))
