"""Filling frozen slotted dataclasses on hot paths without ``object.__setattr__``.

Each field a frozen dataclass's ``__init__`` sets costs a call of ``object.__setattr__``
(a slot wrapper: about ten times a plain assignment). Registering 100,000 tasks builds a
:class:`~xtasks.Task`, an anchored trigger and a task record each: 34 such calls per task.
An object of a *writable twin* (the same slots, no frozen ``__setattr__``) is filled by
plain assignments, then given the frozen class as its class: Python allows it, as the
layouts are the same, and the result is an ordinary instance of the frozen class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["writable_twin"]


def writable_twin(cls: type[object]) -> type[Any]:
    """A class with the bases and slots of ``cls`` (a ``dataclass(frozen=True,
    slots=True)``) that plain assignments can fill; assign ``cls`` to ``__class__`` once
    every slot is set. Only the builder ever holds such an object."""
    slots = cls.__slots__  # type: ignore[attr-defined]  # made by dataclass(slots=True)
    metaclass = cast("Callable[..., type[Any]]", type(cls))  # ABCMeta for a Trigger
    twin = metaclass(f"_Writable{cls.__name__}", cls.__bases__, {"__slots__": slots})
    twin.__abstractmethods__ = frozenset()  # a Trigger's: the twin is never called
    return twin
