"""Work measured by what a loaded machine cannot change: Python calls, not seconds."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["calls_during"]

T = TypeVar("T")


def calls_during(action: Callable[[], T]) -> tuple[T, int]:
    """``action()``'s result and how many Python calls it made: a bound on work that
    holds on a loaded CI machine, where a wall-clock bound does not."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event == "call":
            count += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = action()
    finally:
        sys.setprofile(previous)
    return result, count
