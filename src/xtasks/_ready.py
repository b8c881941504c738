"""The ready queue: runs due to start, by priority, then due time, then arrival.

One heap per mode, because a run waits only for a slot of its own kind: a ``sync`` run
held back by a full thread pool does not hold back an ``async`` run of lower priority.
Entries are invalidated lazily (a run's ``token`` moves on when it changes), so removing
a run is O(1) and popping skips the stale ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, final

from ._task import Mode

if TYPE_CHECKING:
    from datetime import datetime

    from ._run_state import Run

__all__ = ["ReadyQueue"]

_Item = tuple[int, "datetime", int, int, "Run"]  # (priority rank, due, arrival, token, run)


@final
class ReadyQueue:
    """Ready runs and the slots they start into.

    :param max_concurrency: runs executing at once, all modes together.
    :param thread_slots: ``sync`` runs executing at once.
    :param process_slots: ``process`` runs executing at once.
    """

    __slots__ = ("_heaps", "_limits", "_live", "_seq", "by_mode", "max_concurrency", "running")

    def __init__(self, *, max_concurrency: int, thread_slots: int, process_slots: int) -> None:
        self.max_concurrency = max_concurrency
        self._limits = {Mode.ASYNC: math.inf, Mode.SYNC: thread_slots, Mode.PROCESS: process_slots}
        self._heaps: dict[Mode, list[_Item]] = {m: [] for m in Mode}
        self._seq = itertools.count()
        self._live = 0  # live entries (the stale ones excluded)
        self.running = 0  #: attempts holding a slot
        self.by_mode = dict.fromkeys(Mode, 0)  #: attempts holding a slot, by mode

    def __len__(self) -> int:
        """Runs ready and waiting for a slot. O(1)."""
        return self._live

    def push(self, run: Run) -> None:
        run.in_ready = True
        self._live += 1
        task = run.entry.task
        heapq.heappush(
            self._heaps[task.mode], (task.priority.rank, run.due, next(self._seq), run.token, run)
        )

    def discard(self, run: Run) -> None:
        """``run`` leaves the queue (it ended): its entry turns stale. Call after bumping
        its ``token``."""
        if run.in_ready:
            run.in_ready = False
            self._live -= 1

    def pop(self) -> Run | None:
        """Take the run that should start now, if a slot of its kind is free, and hold
        that slot for it (give it back with :meth:`release`)."""
        if self.running >= self.max_concurrency:
            return None
        best: list[_Item] | None = None
        for mode, heap in self._heaps.items():
            while heap and heap[0][4].token != heap[0][3]:
                heapq.heappop(heap)
            if not heap or self.by_mode[mode] >= self._limits[mode]:
                continue
            if best is None or heap[0] < best[0]:
                best = heap
        if best is None:
            return None
        run = heapq.heappop(best)[4]
        run.in_ready = False
        self._live -= 1
        self.running += 1
        self.by_mode[run.entry.task.mode] += 1
        return run

    def release(self, run: Run) -> None:
        """The attempt of ``run`` ended: its slot is free."""
        self.running -= 1
        self.by_mode[run.entry.task.mode] -= 1
