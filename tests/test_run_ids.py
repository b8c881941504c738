"""Run ids: fixed-width base32, creation order within a process, unique across makers and
processes, and distinct in their first ten characters for runs a millisecond apart."""

from __future__ import annotations

import multiprocessing
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from xtasks import Scheduler, Task
from xtasks._run_ids import ID_CHARS, time_ordered_ids

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

ID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
T0_NS = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()) * 10**9


class FakeNanos:
    """A wall clock in nanoseconds that tests set by hand."""

    def __init__(self, ns: int = T0_NS) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def millis_of(run_id: str) -> int:
    value = 0
    for char in run_id[:10]:
        value = value * 32 + ALPHABET.index(char)
    return value


def test_an_id_is_26_base32_characters_that_start_with_its_millisecond() -> None:
    clock = FakeNanos(T0_NS + 123_456_789)
    new_id = time_ordered_ids(clock)
    made = [new_id() for _ in range(3)]
    assert ID_CHARS == 26
    for run_id in made:
        assert ID.fullmatch(run_id), run_id
        assert millis_of(run_id) == T0_NS // 10**6 + 123
    assert len(set(made)) == 3


def test_runs_a_millisecond_apart_differ_in_their_first_ten_characters() -> None:
    clock = FakeNanos()
    new_id = time_ordered_ids(clock)
    shown = []
    for _ in range(100):
        shown.append(new_id()[:10])
        clock.ns += 1_000_000
    assert len(set(shown)) == 100


def test_string_order_is_creation_order_within_a_process() -> None:
    """Through many ids in one millisecond (past the 1,024 of one cached block), a clock
    moving on, a clock set back, and a second maker taking counts in between."""
    clock = FakeNanos()
    new_id, other = time_ordered_ids(clock), time_ordered_ids(clock)
    made = []
    for step in range(3000):
        made.append(new_id())
        if step % 7 == 0:
            other()  # the counter is shared: this maker's blocks move under it
        if step % 500 == 0:
            clock.ns += 3_000_000
        if step == 1500:
            clock.ns -= 60 * 10**9  # the wall clock set back a minute
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert millis_of(made[1501]) == millis_of(made[1500])  # held until the clock catches up


def test_two_makers_in_one_process_never_give_the_same_id() -> None:
    clock = FakeNanos()  # the same millisecond for both, all along
    a, b = time_ordered_ids(clock), time_ordered_ids(clock)
    made = [maker() for _ in range(2000) for maker in (a, b)]
    assert len(set(made)) == len(made)


PRINT_IDS = """
import sys
from xtasks._run_ids import time_ordered_ids
new_id = time_ordered_ids(lambda: 1_772_366_400_000_000_000)  # one millisecond for all
print("\\n".join(new_id() for _ in range(3000)))
"""


def test_two_processes_never_give_the_same_id() -> None:
    """Replicas: the same millisecond and the same counts, told apart by their random part."""
    outputs = [
        subprocess.run(
            [sys.executable, "-c", PRINT_IDS], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert len(outputs[0]) == len(outputs[1]) == 3000
    assert not set(outputs[0]) & set(outputs[1])
    assert outputs[0][0][10:18] != outputs[1][0][10:18]  # the random part


def _ids_in_child(new_id: Callable[[], str], conn: Connection) -> None:
    conn.send([new_id() for _ in range(2000)])
    conn.close()


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the platform cannot fork"
)
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """A server that forks its workers after building the scheduler: each worker's maker
    was copied with the parent's random part and counter, and must not follow them."""
    new_id = time_ordered_ids(FakeNanos())  # one millisecond for parent and children
    new_id()
    context = multiprocessing.get_context("fork")
    made = []
    for _ in range(2):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_ids_in_child, args=(new_id, sender))
        child.start()
        sender.close()
        made.append(receiver.recv())
        child.join(timeout=30)
        assert child.exitcode == 0
    made.append([new_id() for _ in range(2000)])
    every = [run_id for ids in made for run_id in ids]
    assert len(set(every)) == len(every)


@pytest.mark.anyio
async def test_the_scheduler_gives_its_runs_time_ordered_ids() -> None:
    async def job() -> None:
        pass

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("job", job))
    async with scheduler:
        made = [(await scheduler.run("job")).id for _ in range(5)]
    assert all(ID.fullmatch(run_id) for run_id in made), made
    assert made == sorted(made)
    assert len(set(made)) == 5
