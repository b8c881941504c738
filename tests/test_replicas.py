"""Replica processes on one SQLite file: restarts catch up, crashes lose nothing.

What every shared backend must do as a fleet (each fire once, a killed or paused replica)
is in ``test_fleet.py``.

Every process is a real ``python -m tests.replicas.app``; the tests synchronise on the
lines they print (``FINAL ...`` once a run's final record is stored), never on sleeps.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from xtasks import RunRecord, RunStatus

from .replicas.harness import Replica, every_run, runs_in

if TYPE_CHECKING:
    from pathlib import Path
pytestmark = pytest.mark.slow


def test_a_restart_after_downtime_catches_up_once_and_records_the_rest_missed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "one.db"
    env = {"XTASKS_TEST_GRACE": "0.1"}
    first = Replica(db, "first", env=env)
    first.wait_for(lambda line: line.startswith("FINAL tick "))
    assert first.stop()[0] == 0
    time.sleep(1.5)  # downtime: the fires of these 1.5 s pass while nothing runs
    second = Replica(db, "second", env=env)
    second.wait_for(lambda line: line.startswith("FINAL tick ") and line.endswith("catch_up"))
    second.wait_for(lambda line: line.startswith("FINAL tick ") and line.endswith("schedule"))
    assert second.stop()[0] == 0
    runs = runs_in(db, "tick")
    missed = [r for r in runs if r.status is RunStatus.MISSED]
    caught_up = [r for r in runs if r.cause.value == "catch_up"]
    assert len(caught_up) == 1 and caught_up[0].status is RunStatus.SUCCEEDED
    assert len(missed) == 1 and missed[0].reason is not None
    count = int(missed[0].reason.split()[1])
    # Every grid fire between the first replica's last fire and the second's first on-time
    # fire is accounted for: one caught up, the rest counted missed. (How many there are
    # depends on the downtime plus the second process's start-up, which load stretches.)
    last_before = max(r.scheduled_at for r in runs if r.replica == "first")
    first_after = min(
        r.scheduled_at
        for r in runs
        if r.replica == "second"
        and r.cause.value == "schedule"
        and r.status is not RunStatus.MISSED
    )
    gap_fires = round((first_after - last_before).total_seconds() / 0.2) - 1
    assert count >= 3, missed[0].reason  # at least 1.5 s of 0.2 s fires, less the one run
    assert abs((count + 1) - gap_fires) <= 1, (missed[0].reason, gap_fires)
    scheduled = sorted(r.scheduled_at for r in runs if r.status is not RunStatus.MISSED)
    assert len(scheduled) == len(set(scheduled))


def test_a_kill_during_a_burst_of_writes_keeps_every_reported_run(tmp_path: Path) -> None:
    db = tmp_path / "burst.db"
    replica = Replica(db, "burst", env={"XTASKS_TEST_TASKS": "none", "XTASKS_TEST_BURST": "3000"})
    for _ in range(300):
        replica.wait_for(lambda line: line.startswith("FINAL "))
    replica.kill()
    while not replica.lines.empty():
        replica.seen.append(replica.lines.get())
    # A line cut short by the kill is not a report: a whole one ends with its trigger.
    complete = [line.split() for line in replica.seen if line.endswith(" submit")]
    reported = {parts[2] for parts in complete if parts[0] == "FINAL" and len(parts) == 6}
    assert len(reported) >= 300
    task = complete[0][1]
    stored = {r.id: r for r in runs_in(db, task)}  # the file opens after a SIGKILL
    missing = reported - stored.keys()
    assert not missing, f"{len(missing)} run(s) reported finished were lost"
    assert all(stored[i].status is RunStatus.SUCCEEDED for i in reported)


def test_runs_a_killed_replica_left_queued_are_reaped_and_recovered_when_the_task_says_so(
    tmp_path: Path,
) -> None:
    """SIGKILL with 1,600 submissions and 5 triggers queued behind a running run: one lease
    later a fresh process finds none of them live; all are `lost`, and the triggered task
    (`recover=True`) runs again. Submissions are not re-run: their arguments are gone."""
    db = tmp_path / "orphans.db"
    lease = 1.0
    submissions, triggers = 1600, 5
    doomed = Replica(
        db,
        "doomed",
        env={
            "XTASKS_TEST_TASKS": "again",
            "XTASKS_TEST_LEASE": str(lease),
            "XTASKS_TEST_CONCURRENCY": "1",
            "XTASKS_TEST_ORPHANS": f"{submissions},{triggers}",
        },
    )
    doomed.wait_for(lambda line: line == f"QUEUED {submissions + triggers}")
    # While their replica lives, its queued runs outlive several leases: it renews them.
    time.sleep(2.5 * lease)
    live_statuses = {RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING}

    def by_doomed() -> list[RunRecord]:
        return [r for r in every_run(db) if r.replica == "doomed"]

    before = Counter(r.status for r in by_doomed())
    assert before == {RunStatus.QUEUED: submissions + triggers, RunStatus.RUNNING: 1}
    doomed.kill()

    heir = Replica(db, "heir", env={"XTASKS_TEST_TASKS": "again", "XTASKS_TEST_LEASE": "1"})
    try:
        for _ in range(triggers):
            heir.wait_for(lambda line: line.startswith("FINAL again ") and " succeeded " in line)
    finally:
        code, err = heir.stop()
    assert code == 0, err
    orphans = by_doomed()
    assert len(orphans) == submissions + triggers + 1
    assert not [r for r in orphans if r.status in live_statuses]
    assert {r.status for r in orphans} == {RunStatus.LOST}
    assert {r.reason for r in orphans} == {"lost: its replica doomed went silent past its lease"}
    recovered = [r for r in every_run(db) if r.replica == "heir"]
    assert len(recovered) == triggers
    assert {(r.task, r.status, r.cause.value) for r in recovered} == {
        ("again", RunStatus.SUCCEEDED, "manual")
    }
