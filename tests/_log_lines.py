"""What xtasks logs while a test runs, kept in order with the anyio time of each line."""

from __future__ import annotations

import logging
import math

import anyio


class LogLines(logging.Handler):
    """Keeps every message that reaches it (add it to a logger), and when it came."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.messages: list[str] = []
        #: anyio time of each message (NaN for one logged outside the event loop)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        try:
            self.times.append(anyio.current_time())
        except RuntimeError:  # a worker thread's line: no event loop there
            self.times.append(math.nan)

    def said(self, text: str) -> bool:
        return any(text in message for message in self.messages)
