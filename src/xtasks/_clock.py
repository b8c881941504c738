"""The only place that reads wall time.

The planner takes ``now`` as an argument and the runtime asks a :class:`Clock`, so tests
swap in :class:`xtasks.testing.FakeClock` and never sleep in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Tells the time and sleeps until a deadline."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, deadline: datetime | None) -> None:
        """Return at ``deadline`` (at once if it has passed); ``None`` sleeps forever.

        Must be cancellable: the runtime cancels it when an earlier deadline appears.
        """
        ...


class SystemClock:
    """Wall time from the operating system."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime | None) -> None:
        if deadline is None:
            await anyio.sleep_forever()
            return
        delay = (deadline - datetime.now(UTC)).total_seconds()
        # Re-read after the sleep: the wall clock may have been stepped meanwhile.
        while delay > 0:
            await anyio.sleep(delay)
            delay = (deadline - datetime.now(UTC)).total_seconds()
