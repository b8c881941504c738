"""The state sync: pauses, resumes and cancels made on another replica take effect here.

Each replica writes its own state changes with ``Store.change_task_state``, which numbers
them fleet-wide; this loop asks the store what changed since the last number it saw
(``Store.task_state_changes``) about once a second, or sooner when the store hears of a
change (``Store.wait_for_changes``: PostgreSQL ``LISTEN``, Redis pub/sub), and hands each
change to the planner, which applies it without writing it back. The first poll asks
from 0, so a change made between loading the tasks at start and this loop is not missed.
Polling is the guarantee; notifications only shorten the wait. A read or an action by a
person (``describe``, pause, resume, cancel, an audited trigger) does not wait for the
next poll: it polls at once (:meth:`StateSync.catch_up`), so every replica answers the
fleet's state as soon as the replica that changed it has answered.

A poll may answer with a state older than this replica's own: a change made here and
not yet stored, or stored after the poll read. The sync leaves such a task alone (its
own change, numbered higher, is the fleet's latest), so a pause never flickers back.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Final, final

import anyio

from ._errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._runs import TaskState
    from .abc import Store

__all__ = ["POLL_INTERVAL", "StateSync"]

_log = logging.getLogger("xtasks")

#: Seconds between two polls when no notification comes: how late, at worst, another
#: replica's pause takes effect here while notifications are lost (under a second, with
#: room for the poll itself).
POLL_INTERVAL: Final = 0.8


@final
class StateSync:
    """Polls the store for task state changes; ``apply(name, state)`` applies one here."""

    def __init__(self, store: Store, apply: Callable[[str, TaskState], object]) -> None:
        self._store = store
        self._apply = apply
        self._scope = anyio.CancelScope()
        #: The highest change number seen; ``None`` before the first poll.
        self.seen: int | None = None
        self._unstored: Counter[str] = Counter()  # our changes not stored yet, by task
        self._ours: dict[str, int] = {}  # the number of our latest stored change, by task
        self._lock = anyio.Lock()  # one poll at a time: the loop's, or a reader's catch-up
        self._polls = 0  # polls begun so far
        self._read = 0  # the latest poll that read the changes, by the order polls began

    def stop(self) -> None:
        self._scope.cancel()

    def changing(self, task: str) -> None:
        """This replica changed ``task``'s state; the write is on its way to the store."""
        self._unstored[task] += 1

    def changed(self, task: str, change: int) -> None:
        """This replica's change of ``task``'s state is stored, numbered ``change``."""
        self._unstored[task] -= 1
        if self._unstored[task] <= 0:
            del self._unstored[task]
        self._ours[task] = max(self._ours.get(task, 0), change)

    async def catch_up(self) -> None:
        """Apply every change stored before this call, then return: a read made right
        after another replica's change (a page, an API call) answers the fleet's state,
        not this replica's view of it one poll ago.

        A poll that began after this call was made, and ended, did it already: callers
        arriving together share one poll.

        :raises StoreError: the changes could not be read (this replica's view stands).
        """
        asked = self._polls
        async with self._lock:
            if self._read <= asked:
                await self._poll()

    async def _poll(self) -> None:
        """Read the changes since the last one seen and apply them (under ``_lock``:
        changes are applied in the order they were read)."""
        self._polls += 1
        begun = self._polls
        latest, changed = await self._store.task_state_changes(self.seen or 0)
        self._read = begun
        self.seen = latest
        for name, state in changed.items():
            if name not in self._unstored and self._ours.get(name, 0) <= latest:
                self._apply(name, state)

    async def run(self) -> None:
        failing = False
        with self._scope:
            while True:
                try:
                    async with self._lock:
                        await self._poll()
                except StoreError as exc:
                    if not failing:  # once per outage, not every poll
                        _log.warning("could not read task state changes: %s", exc)
                    failing = True
                    # Not wait_for_changes: a change heard of would end it at once, and
                    # the failing poll would be tried again and again without a pause.
                    await anyio.sleep(POLL_INTERVAL)
                    continue
                else:
                    if failing:
                        _log.warning("task state changes are read again")
                    failing = False
                await self._store.wait_for_changes(self.seen or 0, POLL_INTERVAL)
