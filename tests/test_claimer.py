"""The claimer on its own, in virtual time (trio's mock clock jumps over every sleep):
while the store cannot claim, it waits 0.5 s, then twice as long each time up to 10 s,
before it tries again; once a claim works, the fires it could not claim are handed on as
one range, named missed, and the pause starts over."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from tests._log_lines import LogLines
from tests._virtual_time import in_virtual_time
from xtasks import RunCause, RunRecord, RunStatus, StoreError
from xtasks._claimer import Claimer
from xtasks._decisions import ClaimFire
from xtasks._recorder import Recorder
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FaultyStore
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class TimedClaims(DelegatingStore[FaultyStore]):
    """Notes the anyio time of every claim asked of the store."""

    def __init__(self) -> None:
        super().__init__(FaultyStore(MemoryStore()))
        self.tries: list[float] = []

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        self.tries.append(anyio.current_time())
        return await self.inner.claim_fire(task, fire_time, replica)

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        """Like a backend of someone else's: a failure raises for the whole batch."""
        self.tries.append(anyio.current_time())
        outcomes = await self.inner.claim_fires(fires, replica)
        for outcome in outcomes:
            if isinstance(outcome, StoreError):
                raise outcome
        return outcomes


@in_virtual_time()
async def test_failing_claims_are_tried_again_after_pauses_doubling_up_to_ten_seconds(
    anyio_backend: object,
) -> None:
    store = TimedClaims()
    await store.open()
    won: list[ClaimFire] = []
    both = anyio.Event()

    def on_won(claim: ClaimFire) -> None:
        won.append(claim)
        if len(won) == 2:
            both.set()

    claimer = Claimer(store, "r1", Recorder(store, lambda event: None), on_won)
    store.inner.fail_writes(count=7, message="locked")
    said = LogLines(logging.WARNING)
    logging.getLogger("xtasks").addHandler(said)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(claimer.run)
            for minute in (1, 2, 3):  # three fires of one task; the first claim fails
                fire = ClaimFire("tick", T0 + timedelta(minutes=minute), RunCause.SCHEDULE)
                claimer.add(fire)
                await anyio.sleep(0.1)
            claimer.add(ClaimFire("tock", T0 + timedelta(minutes=3), RunCause.SCHEDULE))
            with anyio.fail_after(120):
                await both.wait()
            claimer.stop()
    finally:
        logging.getLogger("xtasks").removeHandler(said)
    # said once when it starts and once when it ends, whatever the tries between
    failing = "the store cannot claim fires (locked); fires due meanwhile are recorded "
    failing += "missed once it can"
    assert said.messages == [failing, "the store claims fires again"]
    pauses = [round(b - a, 6) for a, b in itertools.pairwise(store.tries)]
    # the fires due meanwhile are held without asking the store: one try per pause
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 0.0]  # tick's, then tock's
    assert claimer.claim_error is None and claimer.unclaimed == 0
    tick, tock = sorted(won, key=lambda claim: claim.task)
    # the first unclaimed fire of each task, standing for all of them, and why
    assert (tick.fire_time, tick.missed, tick.missed_until) == (
        T0 + timedelta(minutes=1),
        3,
        T0 + timedelta(minutes=3),
    )
    assert tick.missed_because == "not claimed: the store could not claim it: locked"
    assert (tock.fire_time, tock.missed, tock.missed_until) == (
        T0 + timedelta(minutes=3),
        1,
        T0 + timedelta(minutes=3),
    )
    assert tock.missed_because == "not claimed: the store failed: locked"


@in_virtual_time()
async def test_no_fire_is_claimed_while_ten_thousand_records_wait_to_be_written(
    anyio_backend: object,
) -> None:
    """A store that cannot keep up: from 10,000 records waiting (not one fewer), due fires
    are held (and recorded missed later) instead of claimed and run on top of them."""
    store = TimedClaims()
    await store.open()
    recorder = Recorder(store, lambda event: None)  # not started: what it is given waits
    won: list[ClaimFire] = []
    second = anyio.Event()

    def on_won(claim: ClaimFire) -> None:
        won.append(claim)
        if len(won) == 2:
            second.set()

    claimer = Claimer(store, "r1", recorder, on_won)
    for i in range(9_999):
        recorder.record(run_record(f"r{i}"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(claimer.run)
        claimer.add(ClaimFire("tick", T0, RunCause.SCHEDULE))
        await anyio.sleep(1)  # virtual: returns once every task waits
        assert [c.fire_time for c in won] == [T0]
        recorder.record(run_record("r9999"))
        claimer.add(ClaimFire("tick", T0 + timedelta(minutes=1), RunCause.SCHEDULE))
        await anyio.sleep(1)
        assert claimer.unclaimed == 1
        assert len(store.tries) == 1  # the second fire was not asked of the store
        recorder.start(tg)  # the store catches up: the held fire is recorded missed
        with anyio.fail_after(10):
            await second.wait()
        claimer.stop()
        await recorder.stop(1)
    late = won[1]
    assert (late.fire_time, late.missed) == (T0 + timedelta(minutes=1), 1)
    assert late.missed_because == "not claimed: 10000 records waited to be written"


def run_record(run_id: str) -> RunRecord:
    return RunRecord(
        id=run_id, task="job", status=RunStatus.SUCCEEDED, cause=RunCause.MANUAL, scheduled_at=T0
    )


@in_virtual_time()
async def test_a_fire_another_replica_claimed_is_not_handed_on_and_is_logged(
    anyio_backend: object,
) -> None:
    store = TimedClaims()
    await store.open()
    assert await store.inner.claim_fire("tick", T0, "r2")  # the other replica was first
    won: list[ClaimFire] = []
    claimer = Claimer(store, "r1", Recorder(store, lambda event: None), won.append)
    said = LogLines(logging.WARNING)
    said.setLevel(logging.DEBUG)
    logger = logging.getLogger("xtasks")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(said)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(claimer.run)
            claimer.add(ClaimFire("tick", T0, RunCause.SCHEDULE))
            await anyio.sleep(1)  # virtual: returns once every task waits
            claimer.stop()
    finally:
        logger.removeHandler(said)
        logger.setLevel(level)
    assert won == []
    assert said.messages == [
        "fire 2026-03-01T00:00:00+00:00 of task 'tick' was claimed by another replica"
    ]
