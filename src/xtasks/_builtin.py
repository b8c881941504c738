"""The core's own plugin: registered before any entry point, through the same hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._alerter import LoggingAlerter
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .hookspecs import RegisterAlerter

__all__ = ["xtasks_add_alerters"]


@hookimpl
def xtasks_add_alerters(register: RegisterAlerter) -> None:
    """``kind: log`` in YAML: one more logging alerter, e.g. on another logger."""
    register("log", _logging_alerter)


def _logging_alerter(logger: str = "xtasks.alerts") -> LoggingAlerter:
    import logging

    return LoggingAlerter(logging.getLogger(logger))
