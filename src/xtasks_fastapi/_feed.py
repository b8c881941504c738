"""The fleet's run changes, read from the store once per process for every open stream.

Each ``/events`` stream follows the runs of every replica through the store's change feed
(``Store.run_changes``), not the scheduler's own events, which only see this process's
runs. One :class:`RunFeed` per scheduler reads it for all the streams of the process:
whichever stream is waiting polls (about every :data:`POLL_INTERVAL` seconds, at once
when this process stored a run), keeps what it read in a window of recent changes, and
wakes the others; so the store sees one poll per process, however many pages are open,
and none while no page is.

A stream resuming from an older number than the window holds (a page reconnecting after
a while, or through another worker) reads the store from that number itself until it
catches up; one older than what the store still keeps is answered with a reload.
"""

from __future__ import annotations

import bisect
import logging
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel

from xtasks import StoreError
from xtasks.events import RunChanged

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks import RunRecord, Scheduler
    from xtasks.abc import Store

__all__ = ["POLL_INTERVAL", "Batch", "RunFeed", "run_feed"]

_log = logging.getLogger("xtasks.manager")

#: Seconds between two reads of the store's changes while a stream waits: how late, at
#: most, another replica's run shows on this process's streams.
POLL_INTERVAL: Final = 0.5
#: Changes read per store call.
PAGE: Final = 500
#: Recent changes kept in memory for streams that lag behind a little.
WINDOW: Final = 2000


@dataclass(frozen=True, slots=True)
class Batch:
    """What a stream sends next: changes after its number, or a reload."""

    changes: tuple[tuple[int, RunRecord], ...] = ()
    #: Set when the stream's number cannot be resumed from (retention deleted runs
    #: changed after it, or it is from another store): the number to go on from.
    reload_at: int | None = None


class RunFeed:
    """The store's run changes, for every stream of one scheduler in this process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.loop = anyio.lowlevel.current_token()  # its events belong to this loop
        self._recent: deque[tuple[int, RunRecord]] = deque()
        self._numbers: deque[int] = deque()  # the numbers of _recent, for bisect
        #: Every change numbered above this and up to ``latest`` is in the window.
        self._floor = 0
        #: The highest number read; ``None`` before the first read.
        self.latest: int | None = None
        self._pruned = 0
        self._bell = anyio.Event()  # set (and replaced) when the window grows
        self._poke = anyio.Event()  # set when this process stored a run: poll now
        self._polling = False
        self._read_lock = anyio.Lock()
        self._last_poll = float("-inf")
        self._failing = False
        self.unsubscribe: Callable[[], None] = lambda: None

    @property
    def bell(self) -> anyio.Event:
        """Set once changes after the current ones are read; take it before reading."""
        return self._bell

    def poke(self, event: object) -> None:
        """A ``scheduler.subscribe`` callback: a run stored here is read at once."""
        if isinstance(event, RunChanged):
            self._poke.set()

    async def start(self) -> int:
        """The number a new stream starts after: the latest read (reading it if need be)."""
        if self.latest is None:
            await self._read()
        assert self.latest is not None
        return self.latest

    async def after(self, number: int) -> Batch:
        """The changes after ``number``, oldest first (a page of them when the stream
        lags far behind); or a reload when ``number`` cannot be resumed from."""
        if self.latest is None or number > self.latest:
            await self._read()  # a number from another worker, ahead of this one
        assert self.latest is not None
        if number > self.latest or number < self._pruned:
            return Batch(reload_at=self.latest)
        if number >= self._floor:
            numbers = self._numbers
            start = bisect.bisect_right(numbers, number)
            return Batch(tuple(self._recent[i] for i in range(start, len(numbers))))
        answer = await self._store.run_changes(number, PAGE)  # behind the window
        if not answer.complete_after(number):
            return Batch(reload_at=self.latest)
        return Batch(answer.changes)

    async def wait(self, bell: anyio.Event) -> None:
        """Return once ``bell`` is set: poll the store meanwhile unless a stream does."""
        while not bell.is_set():
            if self._polling:
                with anyio.move_on_after(POLL_INTERVAL * 2):  # the poller may go away
                    await bell.wait()
                continue
            self._polling = True
            try:
                delay = self._last_poll + POLL_INTERVAL - anyio.current_time()
                with anyio.move_on_after(delay):
                    await self._poke.wait()
                self._poke = anyio.Event()
                await self._poll()
            finally:
                self._polling = False

    async def _poll(self) -> None:
        self._last_poll = anyio.current_time()
        try:
            await self._read()
        except StoreError as exc:
            if not self._failing:  # once per outage
                _log.warning("live view: could not read the store's run changes: %s", exc)
            self._failing = True
        else:
            if self._failing:
                _log.warning("live view: the store's run changes are read again")
            self._failing = False

    async def _read(self) -> None:
        """Read every change after the latest read into the window; ring if any."""
        async with self._read_lock:
            if self.latest is None:
                answer = await self._store.run_changes(0, 0)
                self.latest = self._floor = answer.latest
                self._pruned = answer.pruned
                return
            grew = False
            while True:
                answer = await self._store.run_changes(self.latest, PAGE)
                self._pruned = answer.pruned
                for number, record in answer.changes:
                    self._recent.append((number, record))
                    self._numbers.append(number)
                    self.latest = number
                    grew = True
                while len(self._numbers) > WINDOW:
                    self._recent.popleft()
                    self._floor = self._numbers.popleft()
                if len(answer.changes) < PAGE:
                    break
            if answer.latest < self.latest:  # the store was wiped, or replaced
                self._recent.clear()
                self._numbers.clear()
                self._floor = answer.latest
                grew = True
            self.latest = answer.latest
            if grew:
                self._bell.set()
                self._bell = anyio.Event()


_feeds: weakref.WeakKeyDictionary[Scheduler, RunFeed] = weakref.WeakKeyDictionary()


def run_feed(scheduler: Scheduler) -> RunFeed:
    """The feed of ``scheduler``'s store in this process, made at the first call."""
    feed = _feeds.get(scheduler)
    if (
        feed is None
        or feed._store is not scheduler.store
        or feed.loop != anyio.lowlevel.current_token()
    ):
        if feed is not None:
            feed.unsubscribe()
        feed = _feeds[scheduler] = RunFeed(scheduler.store)
        feed.unsubscribe = scheduler.subscribe(feed.poke, RunChanged)
    return feed
