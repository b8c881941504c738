"""MemoryStore retention: history is bounded like SQLite's, live runs are never dropped,
``max_age`` applies, and ``memory://?...`` takes the same options."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xtasks import AuditRecord, RunRecord, RunStatus, Scheduler
from xtasks._errors import ConfigError
from xtasks._runs import RunCause
from xtasks.stores import open_store
from xtasks.stores.memory import MemoryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIVE = (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING)


def run(
    run_id: str, *, task: str = "t", status: RunStatus = RunStatus.SUCCEEDED, **kw: Any
) -> RunRecord:
    kw.setdefault("scheduled_at", T0)
    kw.setdefault("cause", RunCause.SCHEDULE)
    return RunRecord(id=run_id, task=task, status=status, **kw)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class WallClock:
    """Unix time that only the test moves, for ``max_age``."""

    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


async def ids(store: MemoryStore, **kw: Any) -> list[str]:
    return [r.id for r in await store.list_runs(limit=10_000, **kw)]


# -- the count bound ------------------------------------------------------------------


@pytest.mark.anyio
async def test_default_keeps_the_newest_1000_finished_runs_per_task() -> None:
    store = MemoryStore()
    await store.open()
    await store.save_runs([run(f"a{i}", task="a", scheduled_at=at(i)) for i in range(1010)])
    await store.save_run(run("b0", task="b"))
    kept = await ids(store, task="a")
    assert kept == [f"a{i}" for i in reversed(range(10, 1010))]
    assert await store.get_run("a9") is None and await store.get_run("a10") is not None
    assert await ids(store, task="b") == ["b0"]  # the bound is per task


@pytest.mark.anyio
async def test_live_runs_are_never_dropped_nor_counted() -> None:
    store = MemoryStore(max_runs_per_task=5)
    await store.open()
    live = [run(f"live{i}", status=s, scheduled_at=at(-1)) for i, s in enumerate(LIVE)]
    await store.save_runs(live)
    for i in range(15):  # N + 10 finished runs, one write each
        await store.save_run(run(f"r{i}", scheduled_at=at(i)))
    assert await ids(store) == ["r14", "r13", "r12", "r11", "r10", "live2", "live1", "live0"]
    # A live run that finishes is the newest to finish: the oldest finished one goes.
    await store.save_run(live[2].evolve(status=RunStatus.SUCCEEDED, finished_at=at(20)))
    assert await ids(store) == ["r14", "r13", "r12", "r11", "live2", "live1", "live0"]
    # More live runs than the bound: all kept.
    await store.save_runs(
        [run(f"q{i}", status=RunStatus.QUEUED, scheduled_at=at(30)) for i in range(9)]
    )
    assert len(await ids(store, statuses=[RunStatus.QUEUED])) == 10


@pytest.mark.anyio
async def test_the_oldest_to_finish_goes_first_and_a_lost_run_counts() -> None:
    clock = [0.0]
    store = MemoryStore(max_runs_per_task=2, lease_ttl=10, clock=lambda: clock[0])
    await store.open()
    await store.save_run(run("long", status=RunStatus.RUNNING, scheduled_at=at(0), replica="a"))
    await store.save_runs([run("s1", scheduled_at=at(1)), run("s2", scheduled_at=at(2))])
    await store.save_run(run("long", scheduled_at=at(0), finished_at=at(3)))
    assert await ids(store) == ["s2", "long"]  # s1 finished first, though scheduled later
    await store.save_run(run("gone", status=RunStatus.RUNNING, scheduled_at=at(4), replica="b"))
    clock[0] = 11.0
    assert [r.id for r in await store.reap_lost()] == ["gone"]
    assert await ids(store) == ["gone", "long"]  # lost is final: it pushed s2 out
    assert (await store.get_run("gone")).status is RunStatus.LOST  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_pages_are_consistent_after_pruning() -> None:
    store = MemoryStore(max_runs_per_task=7)
    await store.open()
    failed = RunStatus.FAILED
    for i in range(30):
        status = failed if i % 3 == 0 else RunStatus.SUCCEEDED
        await store.save_run(run(f"r{i:02d}", status=status, scheduled_at=at(i)))
        await store.save_run(run(f"o{i:02d}", task="other", scheduled_at=at(i + 0.5)))
    whole = await ids(store, task="t")
    assert whole == [f"r{i:02d}" for i in range(29, 22, -1)]
    pages = [await store.list_runs(task="t", limit=3, offset=o) for o in range(0, 9, 3)]
    assert [r.id for page in pages for r in page] == whole
    assert await ids(store, task="t", statuses=[failed]) == ["r27", "r24"]
    everything = await ids(store)
    assert len(everything) == 14 and everything[:2] == ["o29", "r29"]
    assert await store.list_runs(task="t", offset=7) == []


@pytest.mark.anyio
async def test_a_run_moved_to_another_task_counts_there() -> None:
    store = MemoryStore(max_runs_per_task=2)
    await store.open()
    await store.save_runs([run("x", scheduled_at=at(0)), run("y", scheduled_at=at(1))])
    await store.save_run(run("x", task="u", scheduled_at=at(0)))
    await store.save_run(run("z", scheduled_at=at(2)))
    assert await ids(store, task="t") == ["z", "y"]
    assert await ids(store, task="u") == ["x"]


@pytest.mark.anyio
async def test_scheduler_history_on_a_bounded_memory_url() -> None:
    async def job(i: int) -> int:
        return i

    async with Scheduler("memory://?max_runs_per_task=3", plugins=False) as scheduler:
        for i in range(5):
            handle = await scheduler.submit(job, i)
            assert (await handle.wait()).status is RunStatus.SUCCEEDED
        name = (await scheduler.get_run(handle.id)).task  # type: ignore[union-attr]
        assert [r.result for r in await scheduler.history(name)] == [4, 3, 2]


# -- max_age --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_max_age_drops_old_finished_runs_and_audit_records() -> None:
    now = T0 + timedelta(days=3)
    clock = WallClock(now)
    store = MemoryStore(max_age=3600, wall_clock=clock)
    await store.open()
    await store.save_runs(
        [
            run("ancient", scheduled_at=now - timedelta(days=2)),
            run("long", scheduled_at=now - timedelta(days=2), finished_at=now),
            run("stuck", status=RunStatus.RUNNING, scheduled_at=now - timedelta(days=2)),
            run("edge", scheduled_at=now - timedelta(seconds=3599)),
            run("fresh", scheduled_at=now),
        ]
    )
    for name, when in (("old", now - timedelta(hours=2)), ("new", now)):
        audit = AuditRecord(id=name, at=when, actor="ops", action="run", task="t", outcome="ok")
        await store.add_audit(audit)
    assert await store.prune() == 1
    assert set(await ids(store)) == {"long", "stuck", "edge", "fresh"}
    assert [r.id for r in await store.list_audit()] == ["new"]
    clock.now += 2  # "edge" is now 3601 s old
    assert await store.prune() == 1
    clock.now += 86400  # only the live run stays
    assert await store.prune() == 2
    assert await ids(store) == ["stuck"]
    assert await store.list_audit() == []


@pytest.mark.anyio
async def test_max_age_applies_by_itself_after_writes() -> None:
    clock = WallClock(T0)
    store = MemoryStore(max_age=60, wall_clock=clock)
    store.prune_every = 5
    await store.open()
    await store.save_runs(
        [run(f"r{i}", scheduled_at=T0 - timedelta(minutes=2 * i)) for i in range(4)]
    )
    assert len(await ids(store)) == 4  # off the hot path: not yet
    await store.save_run(run("r4", scheduled_at=T0))
    assert await ids(store) == ["r4", "r0"]


# -- options --------------------------------------------------------------------------


def test_memory_url_takes_the_retention_options() -> None:
    store = open_store("memory://?max_runs_per_task=100&max_age=3600")
    assert isinstance(store, MemoryStore)
    assert (store.max_runs_per_task, store.max_age) == (100, 3600.0)
    default = open_store("memory://")
    assert isinstance(default, MemoryStore)
    assert (default.max_runs_per_task, default.max_age) == (1000, None)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("memory://?max_runs_per_task=0", "field 'max_runs_per_task': must be at least 1, not 0"),
        ("memory://?max_runs_per_task=-5", "field 'max_runs_per_task': must be at least 1"),
        ("memory://?max_runs_per_task=ten", "option 'max_runs_per_task'"),
        ("memory://?max_age=0", "field 'max_age': must be > 0 seconds"),
        ("memory://?max_age=inf", "field 'max_age': must be > 0 seconds"),
        ("memory://?max_age=soon", "option 'max_age' in 'memory://?max_age=soon' must be a float"),
        ("memory://?lease_ttl=5", "known: max_runs_per_task, max_age"),
        ("memory://?password=hunter22", "unknown option 'password' in 'memory://?password=***'"),
    ],
)
def test_bad_memory_options_name_the_option(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert words in str(info.value)
    assert "hunter22" not in str(info.value)


def test_bad_bounds_are_refused_by_the_constructor_too() -> None:
    with pytest.raises(ConfigError, match="max_runs_per_task"):
        MemoryStore(max_runs_per_task=0)
    with pytest.raises(ConfigError, match="max_age"):
        MemoryStore(max_age=-1)
    assert MemoryStore(max_runs_per_task=None).max_runs_per_task is None  # keep all


# -- memory stays bounded -------------------------------------------------------------


def test_memory_does_not_grow_with_the_number_of_runs() -> None:
    """Runs written queued, running, then final (new objects each time), some rewritten,
    over many tasks, with both bounds: what the store holds stops growing."""

    async def churn(store: MemoryStore, clock: WallClock, start: int, count: int) -> None:
        for i in range(start, start + count):
            task = f"task{i % 20}"
            queued = run(f"r{i}", task=task, status=RunStatus.QUEUED, scheduled_at=at(i / 60))
            await store.save_run(queued)
            await store.save_run(queued.evolve(status=RunStatus.RUNNING))
            done = queued.evolve(status=RunStatus.SUCCEEDED, finished_at=at(i / 60))
            await store.save_run(done)
            if i % 7 == 0:
                await store.save_run(done.evolve(result=i))  # a final record rewritten
            clock.now = at(i / 60).timestamp()

    async def measure() -> tuple[int, int]:
        clock = WallClock(T0)
        store = MemoryStore(max_runs_per_task=50, max_age=3 * 3600, wall_clock=clock)
        await store.open()
        await churn(store, clock, 0, 4000)
        gc.collect()
        tracemalloc.start()
        try:  # peaks: the stale entries the store drops in batches come and go
            await churn(store, clock, 4000, 4000)
            first = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            await churn(store, clock, 8000, 12000)
            second = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(await store.list_runs(limit=10_000)) == 20 * 50
        return first, second

    first, second = anyio.run(measure)
    assert second - first < 64 * 1024, (first, second)  # 12,000 more runs: no growth


def test_memory_a_burst_of_live_runs_used_is_given_back() -> None:
    """20,000 runs queued at once, then finished: the store ends as small as its bound."""

    async def burst() -> int:
        store = MemoryStore(max_runs_per_task=100)
        await store.open()
        gc.collect()
        tracemalloc.start()
        try:
            queued = [run(f"r{i}", status=RunStatus.QUEUED) for i in range(20_000)]
            await store.save_runs(queued)
            for record in queued:
                await store.save_run(record.evolve(status=RunStatus.SUCCEEDED))
            del queued, record
            gc.collect()
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    assert anyio.run(burst) < 256 * 1024  # 100 runs kept; the burst's tables: ~2 MiB


# -- against a plain model ------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("save"),
            st.sampled_from([f"r{i}" for i in range(12)]),
            st.sampled_from(["a", "b"]),
            st.sampled_from([*LIVE, RunStatus.SUCCEEDED, RunStatus.FAILED]),
            st.integers(0, 100),
        ),
        st.tuples(
            st.just("time"), st.just(""), st.just(""), st.just(RunStatus.QUEUED), st.integers(0, 40)
        ),
        st.tuples(
            st.just("prune"), st.just(""), st.just(""), st.just(RunStatus.QUEUED), st.just(0)
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, bound=st.integers(1, 4), max_age=st.sampled_from([None, 1800.0]))
def test_retention_matches_a_plain_model(
    ops: list[tuple[str, str, str, RunStatus, int]], bound: int, max_age: float | None
) -> None:
    """The lazy deques and heap keep exactly what a naive list of finished runs would."""

    async def play() -> None:
        clock = WallClock(T0)
        store = MemoryStore(max_runs_per_task=bound, max_age=max_age, wall_clock=clock)
        store.prune_every = 10**9
        store.prune_interval = float("inf")
        await store.open()
        model: dict[str, RunRecord] = {}
        finished: list[str] = []  # ids in finish order
        for verb, run_id, task, status, n in ops:
            if verb == "save":
                record = run(run_id, task=task, status=status, scheduled_at=at(n))
                old = model.get(run_id)
                if old is not None and old.status.is_final and run_id in finished:
                    finished.remove(run_id)
                model[run_id] = record
                if status.is_final:
                    finished.append(run_id)
                    mine = [i for i in finished if model[i].task == task]
                    for gone in mine[: max(0, len(mine) - bound)]:
                        finished.remove(gone)
                        del model[gone]
                await store.save_run(record)
            elif verb == "time":
                clock.now += 60 * n
            else:
                if max_age is not None:
                    cutoff = clock.now - max_age
                    for gone in [i for i in finished if model[i].scheduled_at.timestamp() < cutoff]:
                        finished.remove(gone)
                        del model[gone]
                await store.prune()
            for task_name in ("a", "b"):
                want = sorted(
                    (r for r in model.values() if r.task == task_name),
                    key=lambda r: r.scheduled_at,
                    reverse=True,
                )
                got = await store.list_runs(task=task_name, limit=100)
                assert {r.id for r in got} == {r.id for r in want}, (verb, run_id)
            assert len(await store.list_runs(limit=100)) == len(model)

    anyio.run(play)
