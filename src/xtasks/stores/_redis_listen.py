"""The change listener of :class:`~xtasks.stores.redis.RedisStore`: a thread per store
object on a PubSub connection of its own, keeping the highest change number heard."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from ._registry import scrub

if TYPE_CHECKING:
    import redis

    from .redis import RedisStore

__all__ = ["Listener", "dispose"]

_log = logging.getLogger("xtasks.stores")


class Listener:
    """A thread on a PubSub connection of its own, keeping the highest change number heard.

    It reconnects with backoff after a lost connection, and after each (re)connection
    reads the counter, so a change published while it was away is not missed for long.
    Never raises out: :meth:`RedisStore.wait_for_changes` only waits less when it hears.
    """

    def __init__(self, store: RedisStore, heard: int) -> None:
        self.heard = heard
        self._store = store
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"xtasks-redis-listener-{store.prefix}", daemon=True
        )
        self._thread.start()

    def wait(self, after: int, at_most: float) -> None:
        """Block until a number above ``after`` is heard, the listener stops, or ``at_most``."""
        deadline = time.monotonic() + at_most
        with self._wake:
            while self.heard <= after and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._wake.wait(left)

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        # It reads for 0.2 s at a time; a connection attempt may take connect_timeout.
        self._thread.join(self._store.connect_timeout + 1)

    def _run(self) -> None:
        delay, failing = 0.1, False
        while not self._stop.is_set():
            # A client of its own per connection, closed by this thread: no retries, as a
            # reconnection made quietly by redis-py would skip the catch-up read below.
            store = self._store
            client = store._pool_client(
                2, store.connect_timeout, retries=0, health_check_interval=5
            )
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                with pubsub:
                    pubsub.subscribe(store._channel)
                    self._hear(client.get(store._p + "chg") or 0)
                    delay, failing = 0.1, False
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=0.2)
                        if message is not None and message["type"] == "message":
                            self._hear(message["data"])
            except Exception as exc:  # noqa: BLE001 - never raise out: retry, with backoff
                if self._stop.is_set():
                    return
                _log.log(
                    logging.DEBUG if failing else logging.WARNING,  # once per outage
                    "Redis store %s: change listener lost its connection (%s); retrying "
                    "every %.1f-5 s; replicas learn of changes by polling meanwhile",
                    store._shown,
                    scrub(f"{type(exc).__name__}: {exc}", store.url),
                    delay,
                )
                failing = True
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    dispose(client)

    def _hear(self, number: object) -> None:
        """Remember ``number`` (a message's payload) if it is the highest yet."""
        try:
            heard = int(str(number))
        except ValueError:  # not ours: someone else publishing on the channel
            return
        with self._wake:
            if heard > self.heard:
                self.heard = heard
                self._wake.notify_all()


def dispose(client: redis.Redis) -> None:
    """Close ``client`` and every connection of its pool (``close`` alone leaves a pool
    it was given open)."""
    try:
        client.close()
    finally:
        client.connection_pool.disconnect()
