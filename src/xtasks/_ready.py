"""The ready queue: runs due to start, by priority, then due time, then arrival.

One heap per executor, because a run waits only for a slot of its own executor: a
``sync`` run held back by a full thread pool does not hold back an ``async`` run of lower
priority.
Entries are invalidated lazily (a run's ``token`` moves on when it changes), so removing
a run is O(1) and popping skips the stale ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from datetime import datetime

    from ._run_state import Run

__all__ = ["ReadyQueue"]

_Item = tuple[int, "datetime", int, int, "Run"]  # (priority rank, due, arrival, token, run)


@final
class ReadyQueue:
    """Ready runs and the slots they start into.

    :param max_concurrency: runs executing at once, all executors together.
    :param thread_slots: ``sync`` runs executing at once.
    :param process_slots: ``process`` runs executing at once.

    Other executors' limits come with :meth:`set_slots` (none: unbounded but for
    ``max_concurrency``).
    """

    __slots__ = (
        "_heaps",
        "_limits",
        "_live",
        "_seq",
        "by_executor",
        "max_concurrency",
        "running",
    )

    def __init__(self, *, max_concurrency: int, thread_slots: int, process_slots: int) -> None:
        self.max_concurrency = max_concurrency
        self._limits: dict[str, float] = {
            "async": math.inf,
            "sync": thread_slots,
            "process": process_slots,
        }
        self._heaps: dict[str, list[_Item]] = {name: [] for name in self._limits}
        self._seq = itertools.count()
        self._live = 0  # live entries (the stale ones excluded)
        self.running = 0  #: attempts holding a slot
        #: attempts holding a slot, by executor name
        self.by_executor: dict[str, int] = dict.fromkeys(self._limits, 0)

    def set_slots(self, executor: str, slots: int | None) -> None:
        """Executor ``executor`` runs at most ``slots`` attempts at once (``None``: no
        limit of its own)."""
        self._limits[executor] = math.inf if slots is None else slots
        self._heaps.setdefault(executor, [])
        self.by_executor.setdefault(executor, 0)

    def __len__(self) -> int:
        """Runs ready and waiting for a slot. O(1)."""
        return self._live

    def push(self, run: Run) -> None:
        run.in_ready = True
        self._live += 1
        task = run.entry.task
        heap = self._heaps.get(task.runs_on)
        if heap is None:  # an executor without a limit set: only max_concurrency bounds it
            self.set_slots(task.runs_on, None)
            heap = self._heaps[task.runs_on]
        heapq.heappush(heap, (task.priority.rank, run.due, next(self._seq), run.token, run))

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
        by_executor, limits = self.by_executor, self._limits
        for name, heap in self._heaps.items():
            while heap and heap[0][4].token != heap[0][3]:
                heapq.heappop(heap)
            if not heap or by_executor[name] >= limits[name]:
                continue
            if best is None or heap[0] < best[0]:
                best = heap
        if best is None:
            return None
        run = heapq.heappop(best)[4]
        run.in_ready = False
        self._live -= 1
        self.running += 1
        by_executor[run.entry.task.runs_on] += 1
        return run

    def release(self, run: Run) -> None:
        """The attempt of ``run`` ended: its slot is free."""
        self.running -= 1
        self.by_executor[run.entry.task.runs_on] -= 1
