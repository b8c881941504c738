"""Leases: live runs are leased, expired leases are reaped, fenced runs refuse writes, renewals hold."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import anyio

from ..._runs import (
    ErrorInfo,
    RunRecord,
    RunStatus,
)
from ._support import (
    _SHORT_TTL,
    _T0,
    StoreFactory,
    _at,
    _check,
    _ids,
    _prefix,
    _replicas,
    _require,
    _require_record,
    _run,
    _sleep_until,
)

if TYPE_CHECKING:
    from ...abc import Store


@_check
async def check_lease_expiry_and_reaping(make_store: StoreFactory) -> None:
    """Expired leases are reaped exactly once, across concurrent reapers.

    Verifies, with three store objects and ``lease_ttl`` 0.1 s, that:

    - a lease is not reaped before it expires;
    - once they expire, every live run (``running``, ``queued``, ``waiting``) is returned
      by ``reap_lost`` exactly once over six concurrent reapers and a later one (at least
      once: none missed; at most once: none returned twice, whoever owned it);
    - the record returned has status ``lost``, a reason naming the owner replica and
      every other field unchanged, and it is what ``get_run`` returns afterwards;
    - runs saved final after being live are not reaped;
    - a lease taken just before a ``reap_lost`` call is not reaped.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    live = (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.WAITING)
    doomed = [
        _run(
            f"{prefix}-doomed-{i}",
            task,
            live[i % 3],
            replica=f"replica-{'ab'[i % 2]}",
            started_at=_at(i),
            attempts=1 + i % 3,
            result={"i": i},
        )
        for i in range(10)
    ]
    finished = _run(f"{prefix}-finished", task, RunStatus.RUNNING, replica="replica-a")
    dropped = _run(f"{prefix}-dropped", task, RunStatus.QUEUED, replica="replica-a")
    async with _replicas(make_store, 3, lease_ttl=ttl) as stores:
        a, b, c = stores
        before = anyio.current_time()
        await a.save_runs(doomed[0::2])
        await b.save_runs(doomed[1::2])
        await a.save_runs([finished, dropped])
        await a.save_runs(
            [
                finished.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(1)),
                dropped.evolve(status=RunStatus.CANCELLED, finished_at=_at(1)),
            ]
        )
        saved = anyio.current_time()
        reaped = list(await c.reap_lost())
        if anyio.current_time() - before < ttl:  # else too slow to tell: no verdict
            early = set(_ids(reaped)) & {record.id for record in doomed}
            _require(not early, f"runs reaped before their lease of {ttl} s expired: {early}")

        await _sleep_until(saved + 2 * ttl)

        async def reap(store: Store) -> None:
            reaped.extend(await store.reap_lost())

        async with anyio.create_task_group() as group:
            for store in (*stores, *stores):
                group.start_soon(reap, store)
        reaped.extend(await a.reap_lost())

        counts = Counter(_ids(reaped))
        twice = sorted(run_id for run_id, n in counts.items() if n > 1)
        _require(not twice, f"runs returned by more than one reap_lost call: {twice}")
        missed = sorted(record.id for record in doomed if record.id not in counts)
        _require(not missed, f"live runs past their lease were never reaped: {missed}")
        wrong = sorted({finished.id, dropped.id} & counts.keys())
        _require(not wrong, f"runs reaped though already final: {wrong}")
        by_id = {record.id: record for record in doomed}
        for record in reaped:
            original = by_id.get(record.id)
            if original is None:
                continue  # left by something else on a shared backend
            _require(
                record.status is RunStatus.LOST and bool(record.reason),
                f"reap_lost returned {record!r}: status must be lost, with a reason",
            )
            _require(
                original.replica in (record.reason or ""),
                f"the reason {record.reason!r} must name the owner {original.replica!r}",
            )
            expected = original.evolve(status=RunStatus.LOST, reason=record.reason)
            _require_record("the record reap_lost returned", expected, record)
            _require_record("get_run after reaping", expected, await b.get_run(record.id))

        fresh = _run(f"{prefix}-fresh", task, RunStatus.RUNNING, replica="replica-c")
        before = anyio.current_time()
        await c.save_run(fresh)
        reaped = list(await a.reap_lost())
        if anyio.current_time() - before < ttl:
            _require(fresh.id not in _ids(reaped), "a lease taken just now was reaped")
            await c.save_run(fresh.evolve(status=RunStatus.SUCCEEDED))


@_check
async def check_reap_live_runs(make_store: StoreFactory) -> None:
    """A silent replica's live runs are reaped, started or not; renewed and final ones never.

    A replica that dies leaves runs ``running``, ``queued`` (for a slot, or between
    attempts, for a retry) and ``waiting`` (for a dependency); each holds its lease.
    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that:

    - the live runs of a replica that no longer renews them are reaped once their lease
      expired: ``queued``, ``waiting`` and a retry (``running``, then ``queued``), not
      only ``running``; each comes back ``lost``, with a reason naming that replica and
      every other field unchanged;
    - the same runs of a replica that renews them every ``lease_ttl / 4`` are not reaped
      meanwhile (for three times ``lease_ttl``), and its retry can then be saved
      ``running`` again (not fenced);
    - runs saved final after being live (``succeeded``, ``cancelled``, ``skipped``) are
      never reaped, and renewing them reports them as not held;
    - the silent replica's late writes to its reaped ``queued`` run (starting it,
      finishing it) are refused and change nothing, and renewing reports its runs.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    oops = ErrorInfo("OSError", "flaky")

    def live(owner: str) -> tuple[list[RunRecord], RunRecord]:
        """``owner``'s live runs, and a retry: saved ``running``, then ``queued``."""
        runs = [
            _run(f"{prefix}-{owner}-queued", task, RunStatus.QUEUED, replica=owner),
            _run(f"{prefix}-{owner}-waiting", task, RunStatus.WAITING, replica=owner),
            _run(
                f"{prefix}-{owner}-running",
                task,
                RunStatus.RUNNING,
                replica=owner,
                started_at=_T0,
                attempts=1,
            ),
        ]
        retry = _run(f"{prefix}-{owner}-retry", task, RunStatus.RUNNING, replica=owner, attempts=1)
        return runs, retry

    silent, silent_retry = live("replica-a")
    alive, alive_retry = live("replica-b")
    finals = {
        status: _run(f"{prefix}-final-{status}", task, RunStatus.QUEUED, replica="replica-a")
        for status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.SKIPPED)
    }
    ended = [r.evolve(status=status, finished_at=_at(1)) for status, r in finals.items()]
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs([*silent, silent_retry, *finals.values()])
        await a.save_runs([silent_retry.evolve(status=RunStatus.QUEUED, error=oops), *ended])
        silent.append(silent_retry.evolve(status=RunStatus.QUEUED, error=oops))
        await b.save_runs([*alive, alive_retry])
        await b.save_run(alive_retry.evolve(status=RunStatus.QUEUED, error=oops))
        alive.append(alive_retry.evolve(status=RunStatus.QUEUED, error=oops))
        saved = anyio.current_time()

        reaped: list[RunRecord] = []
        conclusive = True
        while anyio.current_time() - saved < 3 * ttl:
            renewed_at = anyio.current_time()
            gone = await b.renew_leases("replica-b", _ids(alive))
            _require(gone == set(), f"live runs of their owner were reported not held: {gone}")
            await anyio.sleep(ttl / 4)
            reaped.extend(await a.reap_lost())
            early = sorted(set(_ids(reaped)) & set(_ids(alive)))
            if early:
                elapsed = anyio.current_time() - renewed_at
                _require(
                    elapsed >= ttl,
                    f"runs reaped {elapsed:.3f} s after their lease was renewed "
                    f"(lease_ttl={ttl} s): {early}",
                )
                conclusive = False  # too slow to tell
                break
        await _sleep_until(saved + 2 * ttl)
        reaped.extend(await b.reap_lost())

        by_id = {record.id: record for record in reaped}
        missed = [record.id for record in silent if record.id not in by_id]
        _require(
            not missed,
            f"live runs of a silent replica were not reaped after their lease: {missed}; "
            "reap_lost marks queued and waiting runs lost too, not only running ones",
        )
        wrong = sorted(set(by_id) & set(_ids(ended)))
        _require(not wrong, f"runs reaped though already final: {wrong}")
        for original in silent:
            record = by_id[original.id]
            _require(
                record.status is RunStatus.LOST and "replica-a" in (record.reason or ""),
                f"reap_lost returned {record!r}: status must be lost, with a reason "
                "naming the owner 'replica-a'",
            )
            expected = original.evolve(status=RunStatus.LOST, reason=record.reason)
            _require_record(f"the {original.status} run reap_lost returned", expected, record)
            _require_record("get_run after reaping", expected, await b.get_run(original.id))
        for record in ended:
            _require_record("a final run after reap_lost", record, await b.get_run(record.id))
        gone = await a.renew_leases("replica-a", _ids(ended))
        _require(
            gone == set(_ids(ended)), f"renewing final runs must report them all; got {gone!r}"
        )

        orphan = silent[0]
        late = {
            "starting it": orphan.evolve(status=RunStatus.RUNNING, started_at=_at(2), attempts=1),
            "finishing it": orphan.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(3)),
        }
        for what, record in late.items():
            accepted = await a.save_run(record)
            _require(
                accepted is False,
                f"the silent replica's late write ({what}) to its reaped queued run "
                f"returned {accepted!r}, not False",
            )
        _require_record(
            "a reaped queued run after its owner's late writes",
            by_id[orphan.id],
            await b.get_run(orphan.id),
        )
        gone = await a.renew_leases("replica-a", _ids(silent))
        _require(gone == set(_ids(silent)), f"renewing reaped runs must report them; got {gone!r}")
        if conclusive:
            for original in alive:
                current = await a.get_run(original.id)
                _require_record("a live run whose lease was kept renewed", original, current)
            retried = await b.save_run(alive_retry.evolve(attempts=2))
            _require(retried is True, "a renewed retry was refused as if it were lost")
        # Leave nothing live behind: a later reaper on a shared backend would mark it lost.
        await b.save_runs(
            [r.evolve(status=RunStatus.CANCELLED) for r in alive if r.id not in by_id]
        )


@_check
async def check_fencing(make_store: StoreFactory) -> None:
    """A run marked ``lost`` is fenced: every later write to it is refused.

    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that after a run is reaped:

    - its owner's late final write returns ``False`` and changes nothing;
    - ``save_runs`` returns exactly the ids of the refused records and still saves the
      others of the batch, in order around them;
    - a write by another replica, a ``running`` write (no resurrection) and a write of the
      lost record itself are refused too;
    - renewal reports the run as no longer held, and no later ``reap_lost`` returns it.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    victims = [
        _run(
            f"{prefix}-victim-{i}",
            task,
            RunStatus.RUNNING,
            replica="replica-a",
            started_at=_T0,
            attempts=1,
        )
        for i in range(2)
    ]
    victim, other_victim = victims
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs(victims)
        await _sleep_until(anyio.current_time() + 2 * ttl)
        lost = {r.id: r for r in await b.reap_lost() if r.id in _ids(victims)}
        _require(len(lost) == 2, f"expired runs were not reaped (got {sorted(lost)})")

        late = victim.evolve(status=RunStatus.SUCCEEDED, finished_at=_at(1), result={"late": 1})
        saved = await a.save_run(late)
        _require(saved is False, f"the owner's late write to a lost run returned {saved!r}")
        _require_record("after a refused write", lost[victim.id], await b.get_run(victim.id))

        before = _run(f"{prefix}-before", task, RunStatus.SUCCEEDED, replica="replica-a")
        after = _run(f"{prefix}-after", task, RunStatus.FAILED, replica="replica-a")
        refused = await a.save_runs(
            [before, other_victim.evolve(status=RunStatus.FAILED), after.evolve(attempts=1), after]
        )
        _require(
            refused == [other_victim.id],
            f"save_runs must return the ids refused, [{other_victim.id!r}]; got {refused!r}",
        )
        _require_record("a record saved before a refused one", before, await b.get_run(before.id))
        _require_record("a record saved after a refused one", after, await b.get_run(after.id))
        _require_record(
            "a lost run after a refused batch write",
            lost[other_victim.id],
            await b.get_run(other_victim.id),
        )

        attempts = {
            "a write by another replica": victim.evolve(
                status=RunStatus.SUCCEEDED, replica="replica-b"
            ),
            "a running write (resurrection)": victim.evolve(attempts=2),
            "a write of the lost record itself": lost[victim.id],
        }
        for what, record in attempts.items():
            saved = await b.save_run(record)
            _require(saved is False, f"{what} to a lost run returned {saved!r}, not False")
        _require_record("after the refused writes", lost[victim.id], await a.get_run(victim.id))
        gone = await a.renew_leases("replica-a", [victim.id])
        _require(gone == {victim.id}, f"renewing a lost run must report it; got {gone!r}")
        again = set(_ids(await a.reap_lost())) & set(_ids(victims))
        _require(not again, f"lost runs were reaped again: {sorted(again)}")


@_check
async def check_lease_renewal(make_store: StoreFactory) -> None:
    """``renew_leases`` keeps a lease alive and reports the ids it does not hold.

    Verifies, with ``lease_ttl`` 0.1 s and two store objects, that:

    - renewal returns exactly the ids the replica does not hold: another replica's run,
      a run saved final, an unknown id (and ``set()`` for no ids);
    - renewing every ``lease_ttl / 4`` through either store object keeps a run from
      being reaped for several times ``lease_ttl`` while the other object reaps;
    - once renewal stops, the run is reaped, and renewing it then reports it.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    ttl = _SHORT_TTL
    kept = _run(f"{prefix}-kept", task, RunStatus.RUNNING, replica="replica-a")
    foreign = _run(f"{prefix}-foreign", task, RunStatus.RUNNING, replica="replica-b")
    done = _run(f"{prefix}-done", task, RunStatus.RUNNING, replica="replica-a")
    unknown = f"{prefix}-unknown"
    async with _replicas(make_store, 2, lease_ttl=ttl) as (a, b):
        await a.save_runs([kept, done])
        await b.save_run(foreign)
        await a.save_run(done.evolve(status=RunStatus.SUCCEEDED))
        gone = await a.renew_leases("replica-a", [kept.id, foreign.id, done.id, unknown])
        expected = {foreign.id, done.id, unknown}
        _require(gone == expected, f"renew_leases must report {expected}, got {gone!r}")
        none = await a.renew_leases("replica-a", [])
        _require(none == set(), f"renew_leases of no ids returned {none!r}")

        conclusive = True
        start = anyio.current_time()
        turn = 0
        while anyio.current_time() - start < 3 * ttl:
            renewed_at = anyio.current_time()
            gone = await (a, b)[turn % 2].renew_leases("replica-a", [kept.id])
            _require(gone == set(), f"a held lease was reported as not held: {gone!r}")
            await anyio.sleep(ttl / 4)
            if kept.id in _ids(await (b, a)[turn % 2].reap_lost()):
                elapsed = anyio.current_time() - renewed_at
                _require(
                    elapsed >= ttl,
                    f"a run was reaped {elapsed:.3f} s after its lease was renewed "
                    f"(lease_ttl={ttl} s)",
                )
                conclusive = False  # too slow to tell
                break
            turn += 1
        if conclusive:
            current = await a.get_run(kept.id)
            _require_record("a run whose lease was kept renewed", kept, current)
            await _sleep_until(anyio.current_time() + 2 * ttl)
            reaped = _ids(await b.reap_lost())
            _require(kept.id in reaped, "a lease no longer renewed was not reaped")
        gone = await a.renew_leases("replica-a", [kept.id])
        _require(gone == {kept.id}, f"renewing a reaped run must report it, got {gone!r}")
