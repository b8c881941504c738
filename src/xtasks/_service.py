"""The scheduler's own tasks, shielded from the cancellation of the code around it.

The scheduler's task group lives inside the application's ``async with scheduler:``
block, so a cancellation of that block (a timeout, Ctrl-C, ``serve()`` cancelled) would
reach the recorder and the workers at once, before the graceful stop could write what
they hold. Each task started here runs in a shielded scope instead; the scheduler ends
them itself, in order, when it stops, and :meth:`ServiceGroup.cancel` ends what is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from anyio.abc import TaskGroup

__all__ = ["ServiceGroup", "Spawner"]


class Spawner(Protocol):
    """What the scheduler's parts need to start their tasks."""

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> object: ...


@final
class ServiceGroup:
    """Starts tasks in ``tg``, each shielded from outside cancellation until :meth:`cancel`."""

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._scopes: set[anyio.CancelScope] = set()
        self._cancelled = False

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> None:
        self._tg.start_soon(self._shielded, func, args, name=name)

    def cancel(self) -> None:
        """End every task still running (and any started from now on)."""
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    async def _shielded(
        self, func: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.CancelScope() as scope:
            if self._cancelled:
                scope.cancel()
            self._scopes.add(scope)
            try:
                await func(*args)
            finally:
                self._scopes.discard(scope)
