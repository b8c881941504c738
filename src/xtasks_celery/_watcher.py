"""Hears the outcome of every attempt sent to Celery on one Redis connection.

Celery's Redis result backend writes each state of a task (``STARTED``, ``SUCCESS``,
``FAILURE``, ...) to the key ``celery-task-meta-<id>`` and publishes it on a channel of
the same name. One watcher per executor subscribes to the channels of the attempts in
flight, so a thousand waiting runs cost one connection and no thread. A message missed
while the connection was down is read back from the keys (``MGET``) when it comes back,
and by a sweep every ``sweep_interval`` seconds: pub/sub only makes outcomes arrive at
once, the keys decide.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["ResultWatcher", "Watch"]

_log = logging.getLogger("xtasks.celery")

#: Keys read per ``MGET``: a sweep over many attempts does not hold Redis for long.
_MGET_CHUNK = 500
#: The first wait before reconnecting, doubled after each failed attempt.
_MIN_BACKOFF = 0.2
#: The longest wait between two attempts to reconnect.
_MAX_BACKOFF = 10.0


@final
class Watch:
    """The states heard for one Celery task id, oldest first, until it is forgotten."""

    __slots__ = ("_changed", "_states", "channel", "subscribed", "task_id")

    def __init__(self, task_id: str, channel: bytes) -> None:
        self.task_id = task_id
        self.channel = channel
        self.subscribed = anyio.Event()  #: Redis confirmed the subscription
        self._states: list[Mapping[str, Any]] = []
        self._changed = anyio.Event()

    def heard(self, meta: Mapping[str, Any]) -> None:
        """A state for this task: from a message, or read from its key."""
        if self._states and self._states[-1] == meta:
            return  # the same state, heard twice (a message, then a sweep)
        self._states.append(meta)
        self._changed.set()

    async def next_state(self) -> Mapping[str, Any]:
        """Wait for the next state heard."""
        while not self._states:
            await self._changed.wait()
            self._changed = anyio.Event()
        return self._states.pop(0)


@final
class ResultWatcher:
    """Subscribes to the result channels of the attempts in flight; see the module.

    :param client: a ``redis.asyncio`` client on the result backend's database.
    :param decode: turns a stored or published payload into Celery's meta dictionary.
    :param sweep_interval: seconds between two reads of every key in flight.
    """

    def __init__(
        self,
        client: Redis,
        decode: Callable[[bytes], Mapping[str, Any]],
        *,
        sweep_interval: float = 15.0,
    ) -> None:
        self._client = client
        self._decode = decode
        self._sweep_interval = sweep_interval
        self._watches: dict[bytes, Watch] = {}
        self._pubsub: PubSub | None = None  # set while connected
        self._ready = anyio.Event()  # set while connected

    @property
    def in_flight(self) -> int:
        """How many task ids are watched now."""
        return len(self._watches)

    async def watch(self, task_id: str, channel: bytes) -> Watch:
        """Start watching ``task_id``, whose key and channel are ``channel``.

        Returns once Redis confirmed the subscription, or at once when the connection is
        down: its state is then read from its key when the connection comes back.
        """
        watch = self._watches[channel] = Watch(task_id, channel)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.subscribe(channel)
            except Exception:  # noqa: BLE001 - the serving loop reconnects and reads the key
                _log.debug("subscribing to %r failed; read back on reconnect", channel)
                return watch
            with anyio.move_on_after(5):  # a confirmation lost with the connection
                await watch.subscribed.wait()
        return watch

    async def forget(self, watch: Watch) -> None:
        """Stop watching: its outcome is known, or nobody waits for it any more."""
        if self._watches.pop(watch.channel, None) is None:
            return
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(watch.channel)
            except Exception:  # noqa: BLE001 - a new connection subscribes only to those left
                _log.debug("unsubscribing from %r failed", watch.channel)

    async def serve(self) -> None:
        """Hold the connection: read messages, reconnect with a backoff when it fails."""
        backoff = _MIN_BACKOFF
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sweep_loop)
            while True:
                pubsub = self._client.pubsub()
                try:
                    await self._listen(pubsub)
                except Exception as exc:  # noqa: BLE001 - the connection failed: try again
                    if self._ready.is_set():  # it was up: a new fault, not a long outage
                        backoff = _MIN_BACKOFF
                    _log.warning(
                        "Celery result watcher: %s: %s; reconnecting in %.1f s",
                        type(exc).__name__,
                        exc,
                        backoff,
                    )
                finally:
                    self._pubsub = None
                    self._ready = anyio.Event()
                    with anyio.CancelScope(shield=True):
                        await _close(pubsub)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _listen(self, pubsub: PubSub) -> None:
        # A channel of its own: a subscribed connection from the start, so reading can
        # begin before any attempt is in flight.
        await pubsub.subscribe(b"xtasks-celery-watcher")
        self._pubsub = pubsub  # from now on, a new watch subscribes itself
        if self._watches:
            await pubsub.subscribe(*self._watches)
        self._ready.set()
        await self._read_keys(list(self._watches))  # outcomes published while away
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            watch = self._watches.get(channel)
            if watch is None:
                continue
            if kind == "subscribe":
                watch.subscribed.set()
            elif kind == "message":
                self._hear(watch, message["data"])

    async def _sweep_loop(self) -> None:
        """Read every key in flight now and then: the safety net under pub/sub."""
        if not math.isfinite(self._sweep_interval):
            return
        while True:
            await anyio.sleep(self._sweep_interval)
            await self._ready.wait()
            try:
                await self._read_keys(list(self._watches))
            except Exception as exc:  # noqa: BLE001 - the listener reconnects; sweep later
                _log.debug("Celery result sweep failed: %s", exc)

    async def _read_keys(self, channels: Iterable[bytes]) -> None:
        keys = list(channels)
        for start in range(0, len(keys), _MGET_CHUNK):
            chunk = keys[start : start + _MGET_CHUNK]
            values = await self._client.mget(chunk)
            for channel, value in zip(chunk, values, strict=True):
                watch = self._watches.get(channel)
                if watch is not None and isinstance(value, bytes):
                    self._hear(watch, value)

    def _hear(self, watch: Watch, payload: bytes) -> None:
        try:
            meta = self._decode(payload)
        except Exception as exc:  # noqa: BLE001 - a payload we cannot read is the outcome
            meta = {"status": "UNREADABLE", "result": f"{type(exc).__name__}: {exc}"}
        watch.heard(meta)


async def _close(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - closing a broken connection
        _log.debug("closing the watcher's connection: %s", exc)
