"""Run ids: distinct at a glance, sortable by creation, unique across replicas.

An id is 26 lower-case characters of Crockford's base32 (``0-9a-z`` without ``i``, ``l``,
``o``, ``u``), fixed width, so string order is the order of the numbers they write:

- 10 characters: milliseconds since the Unix epoch (48 bits), never going back within a
  process (a wall clock set back keeps the last value until it catches up). The first
  ten characters differ between runs made a millisecond apart, so a short prefix on a
  page tells runs apart, and ids sort roughly by time across replicas;
- 8 characters: 40 random bits drawn once per process, and again in a forked child (a
  server forking workers after the scheduler was built must not give them one);
- 8 characters: a counter shared by every maker of the process, so ids made in one
  millisecond stay distinct and in creation order (it wraps after 2**40 ids, which at a
  million a second takes twelve days: order within that one millisecond is all it costs).

Creation order within a process, unique across processes (the random part) and within
one (the counter). Cheap: the hot path reads the clock, takes the next count and joins
two strings; the first 24 characters are rebuilt once a millisecond or every 1,024 ids.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ID_CHARS", "time_ordered_ids"]

#: Characters in a run id made by :func:`time_ordered_ids`.
ID_CHARS = 26

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, in ASCII order
#: The 1,024 two-character strings of 10 bits, by value: the counter's last 10 bits.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)


def _base32(value: int, width: int) -> str:
    """The last ``5 * width`` bits of ``value`` in ``width`` characters, most significant first."""
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(5 * (width - 1), -1, -5))


def _random_node() -> str:
    return _base32(secrets.randbits(40), 8)


_node = _random_node()
_counter = itertools.count()


def _after_fork_in_child() -> None:
    """A forked child draws its own random part, and moves its counter on by a block of
    1,024, so that every maker rebuilds its cached prefix (with the new random part)."""
    global _node, _counter
    _node = _random_node()
    _counter = itertools.count(((next(_counter) >> 10) + 1) << 10)


if hasattr(os, "register_at_fork"):  # not on Windows, which never forks
    os.register_at_fork(after_in_child=_after_fork_in_child)


def time_ordered_ids(clock_ns: Callable[[], int] = time.time_ns) -> Callable[[], str]:
    """A maker of run ids (see the module's docstring) reading ``clock_ns``, Unix time in
    nanoseconds; a fake one in tests."""
    last_ms = -1
    last_block = -1
    head = ""

    tail = ""  # the random part and the counter's block: rebuilt every 1,024 ids

    def new_id() -> str:
        nonlocal last_ms, last_block, head, tail
        ms = clock_ns() // 1_000_000
        n = next(_counter)
        block = n >> 10
        fresh = block != last_block
        if fresh:
            last_block = block
            tail = _node + _base32(block, 6)
        if ms > last_ms or fresh:
            last_ms = ms = max(ms, last_ms)
            # 50 bits as five 10-bit pairs: a millisecond's head costs five lookups
            pairs = _PAIRS
            head = (
                pairs[(ms >> 40) & 1023]
                + pairs[(ms >> 30) & 1023]
                + pairs[(ms >> 20) & 1023]
                + pairs[(ms >> 10) & 1023]
                + pairs[ms & 1023]
                + tail
            )
        return head + _PAIRS[n & 1023]

    return new_id
