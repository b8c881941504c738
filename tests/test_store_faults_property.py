"""Random histories of store failures interleaved with scheduler work: no final record is
published before the store has it, and none reported final is missing afterwards.

Each example runs a real scheduler (memory store behind a :class:`FaultyStore`, fake
clock) through a random list of steps, then heals the store and stops.
"""

from __future__ import annotations

import anyio
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.test_store_faults import final_events_only_after_commit
from xtasks import Every, RunStatus, Scheduler, Task
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock, FaultyStore

Step = tuple[str, int]

FAULT = st.one_of(
    st.tuples(st.just("fail"), st.integers(1, 6)),  # fail the next n writes
    st.tuples(st.just("outage"), st.just(0)),  # fail every write until healed
)
ANY_STEP = st.one_of(
    st.tuples(st.just("trigger"), st.integers(1, 5)),
    st.tuples(st.just("submit"), st.integers(1, 3)),
    FAULT,
    st.tuples(st.just("heal"), st.just(0)),
    st.tuples(st.just("advance"), st.integers(1, 90)),  # seconds of the fake clock
    st.tuples(st.just("settle"), st.just(0)),  # let the event loop run a while
)
#: Random steps, with at least one fault followed by a run, and time for its write: the
#: store fails in (nearly) every example, not in a third of them.
STEPS = st.builds(
    lambda before, fault, run, after: [*before, fault, run, ("settle", 0), *after],
    st.lists(ANY_STEP, max_size=10),
    FAULT,
    st.tuples(st.just("trigger"), st.integers(1, 5)),
    st.lists(ANY_STEP, max_size=13),
)


def bucket(count: int) -> str:
    return "0" if count == 0 else "1-4" if count < 5 else "5+"


async def flaky(n: int) -> int:
    if n % 3 == 0:
        raise ValueError(f"flaky {n}")
    return n


async def tick() -> None:
    await anyio.lowlevel.checkpoint()


async def play(steps: list[Step]) -> None:
    clock = FakeClock()
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False, clock=clock, shutdown_grace=5)
    scheduler.add(Task("flaky", flaky, args=(0,), overlap="allow", max_retries=1))
    scheduler.add(Task("tick", tick, trigger=Every(seconds=30)))
    reported, unstored = final_events_only_after_commit(store, scheduler)
    handles = []
    async with scheduler:
        for verb, n in steps:
            if verb == "trigger":
                handles += [await scheduler.trigger("flaky") for _ in range(n)]
            elif verb == "submit":
                handles += [await scheduler.submit(flaky, i) for i in range(n)]
            elif verb == "fail":
                store.fail_writes(n)
            elif verb == "outage":
                store.fail_writes()
            elif verb == "heal":
                store.heal()
            elif verb == "advance":
                await clock.advance(n)
            else:
                for _ in range(50):
                    await anyio.lowlevel.checkpoint()
        store.heal()
        with anyio.fail_after(30):
            finals = [await handle.wait() for handle in handles]
            await scheduler._runtime.flush()  # type: ignore[union-attr]
    event(f"writes refused: {bucket(store.failed_writes)}")  # how hard the store failed
    event(f"runs reported final: {bucket(len(reported))}")
    assert not unstored, f"published before the store had them: {unstored}"
    published = {record.id: record for record in reported}
    assert all(r.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) for r in finals)
    await store.open()
    for record in published.values():  # reported final: in the store, as reported
        stored = await store.inner.get_run(record.id)
        assert stored is not None and stored.status is record.status, record
    for handle, record in zip(handles, finals, strict=True):
        assert published[handle.id] == record


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_store_failures_never_publish_unstored_or_lose_reported_runs(steps: list[Step]) -> None:
    note(f"steps {steps!r}")
    for backend in ("asyncio", "trio"):
        anyio.run(play, steps, backend=backend)
