"""A pipe of a running process, read line by line in a thread: tests wait on lines, not time."""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class Lines:
    """Every line ``stream`` gives, in :attr:`seen` once waited past."""

    def __init__(self, stream: IO[str], timeout: float) -> None:
        self.timeout = timeout
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.pump.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, ended: Callable[[], str] = str) -> re.Match[str]:
        """The next line that ``pattern`` matches (``re.search``); an AssertionError naming
        the lines seen when none comes in time, or when the stream ends (with ``ended()``,
        e.g. the process's other output)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"ended before {pattern!r}: {self.seen}\n{ended()}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
