"""The PostgreSQL store's ``LISTEN`` thread: it hears state changes as they commit.

``change_task_state`` sends ``NOTIFY <channel>, '<number>'`` inside its transaction, so
PostgreSQL delivers it at commit. One thread per store object holds a connection of its
own (outside the pool: a listening connection is never lent out), reads
``Connection.notifies(timeout=...)``, remembers the highest number heard and wakes the
tasks waiting in :meth:`ChangeListener.wait` on their event loop (asyncio or trio),
through the loop token captured when the store opened.

It never raises out: a lost connection is reopened with a capped backoff. Once listening
again it reads the highest number made (notifications sent meanwhile were lost): a change
made while it was away wakes the waiters too.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken

__all__ = ["ChangeListener"]

_log = logging.getLogger("xtasks.stores")

#: Seconds between two looks at the stop flag while nothing is heard.
_TICK = 0.2
#: Backoff between reconnections: doubles from the first to the last.
_BACKOFF = (0.1, 5.0)


class ChangeListener:
    """Listens on ``channel`` in a thread of its own, from :meth:`start` to :meth:`stop`.

    :param conninfo: the server, as the pool connects to it.
    :param kwargs: connection parameters (timeouts, keepalives).
    :param latest: a query of one row and column: the highest change number made.
    :param shown: the redacted URL, for logs.
    :param token: the event loop the waiters run on.
    """

    def __init__(
        self,
        conninfo: str,
        kwargs: dict[str, Any],
        channel: str,
        latest: str,
        *,
        shown: str,
        token: EventLoopToken,
    ) -> None:
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._latest = latest
        self._shown = shown
        self._token = token
        self._heard = 0  # the highest change number heard
        self._waiters: set[anyio.Event] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"xtasks-listen {shown}", daemon=True
        )

    @property
    def heard(self) -> int:
        """The highest change number heard so far."""
        return self._heard

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop the thread and wait for it (blocking: call from a worker thread).

        :return: whether it stopped within ``timeout`` seconds.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    async def wait(self, after: int, at_most: float) -> None:
        """Return once a number above ``after`` is heard, at a reconnection, or after
        ``at_most`` seconds."""
        if self._heard > after:
            return
        event = anyio.Event()
        with self._lock:
            self._waiters.add(event)
        try:
            if self._heard > after:  # heard between the first look and registering
                return
            with anyio.move_on_after(at_most):
                await event.wait()
        finally:
            with self._lock:
                self._waiters.discard(event)

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        if not waiters or self._stop.is_set():
            return

        def wake() -> None:
            for event in waiters:
                event.set()

        try:
            anyio.from_thread.run_sync(wake, token=self._token)
        except RuntimeError:  # the event loop is gone: nobody is left to wake
            pass

    def _run(self) -> None:
        delay = _BACKOFF[0]
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, **self._kwargs) as conn:
                    conn.execute(self._listen)
                    row = conn.execute(self._latest).fetchone()  # what it may have missed
                    delay = _BACKOFF[0]
                    self._heard_of(int(row[0]) if row is not None else 0)
                    self._listen_on(conn)
            except psycopg.Error as exc:
                _log.info("PostgreSQL store %s: change listener: %s", self._shown, exc)
            except Exception:  # noqa: BLE001 - a bug must not kill the thread: log it, go on
                _log.exception("PostgreSQL store %s: change listener failed", self._shown)
            self._stop.wait(delay)
            delay = min(delay * 2, _BACKOFF[1])

    def _listen_on(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for note in conn.notifies(timeout=_TICK):
                try:
                    number = int(note.payload)
                except ValueError:
                    continue  # not ours
                self._heard_of(number)

    def _heard_of(self, number: int) -> None:
        if number > self._heard:
            self._heard = number
            self._wake()
