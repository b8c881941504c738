"""Several OS processes sharing one SQLite file: each fire once, crashes lose nothing.

Every process is a real ``python -m tests.replicas.app``; the tests synchronise on the
lines they print (``FINAL ...`` once a run's final record is stored), never on sleeps.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from xtasks import RunRecord, RunStatus
from xtasks.stores import open_store

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Replica:
    """One replica process and the lines it printed."""

    def __init__(
        self,
        db: Path,
        name: str,
        *,
        lines: queue.Queue[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.lines: queue.Queue[str] = lines if lines is not None else queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.replicas.app"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "XTASKS_TEST_STORE": f"sqlite:///{db}",
                "XTASKS_TEST_REPLICA": name,
                **(env or {}),
            },
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # stderr is drained as it comes too: a replica that logs more than a pipe holds
        # (one warning per reaped run, say) would otherwise block on its next write.
        self.errors: list[str] = []
        self.err_reader = threading.Thread(target=self._read_errors, daemon=True)
        self.err_reader.start()
        self.wait_for(lambda line: line == f"READY {name}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self.errors.extend(self.proc.stderr)

    def wait_for(self, match: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _, err = self.stop()
                raise AssertionError(f"{self.name} never printed the line; stderr:\n{err}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match(line):
                return line

    def stop(self) -> tuple[int, str]:
        """Close stdin (the app's cue to leave `async with` gracefully) and wait."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self._close_pipes()

    def _close_pipes(self) -> str:
        self.reader.join(timeout=10)  # they end at EOF, once the process is gone
        self.err_reader.join(timeout=10)
        err = "".join(self.errors)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return err

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._close_pipes()


def runs_in(db: Path, task: str) -> list[RunRecord]:
    async def read() -> list[RunRecord]:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            return await store.list_runs(task=task, limit=100_000)
        finally:
            await store.close()

    return anyio.run(read)


def every_run(db: Path) -> list[RunRecord]:
    async def read() -> list[RunRecord]:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            return await store.list_runs(limit=100_000)
        finally:
            await store.close()

    return anyio.run(read)


def nth(n: int, prefix: str) -> Callable[[str], bool]:
    """Matches the ``n``-th line starting with ``prefix``."""
    seen = 0

    def match(line: str) -> bool:
        nonlocal seen
        seen += line.startswith(prefix)
        return seen >= n

    return match


def test_three_processes_run_every_fire_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    lines: queue.Queue[str] = queue.Queue()  # one stream for the whole fleet
    replicas = [Replica(db, f"replica-{i}", lines=lines) for i in range(3)]
    try:
        replicas[0].wait_for(nth(15, "FINAL tick "))  # about 3 s of 0.2 s fires
    finally:
        results = [r.stop() for r in replicas]
    assert [code for code, _ in results] == [0, 0, 0], results
    runs = [r for r in runs_in(db, "tick") if r.status is not RunStatus.CANCELLED]
    fires = sorted(r.scheduled_at for r in runs if r.cause.value == "schedule")
    assert len(fires) >= 10
    assert len(fires) == len(set(fires)), "a fire ran twice"
    gaps = {b - a for a, b in itertools.pairwise(fires)}
    assert gaps == {timedelta(seconds=0.2)}, f"fires missed or off the shared grid: {gaps}"
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    assert len({r.replica for r in runs}) >= 2, "the fires were not shared"


def test_a_killed_replica_s_run_is_marked_lost_and_the_others_keep_firing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shared.db"
    env = {"XTASKS_TEST_LEASE": "0.6"}
    doomed = Replica(db, "doomed", env={"XTASKS_TEST_TASKS": "hang", **env})
    doomed.wait_for(lambda line: line == "STARTED hang")
    survivor = Replica(db, "survivor", env={"XTASKS_TEST_TASKS": "tick,hang", **env})
    try:
        doomed.kill()
        line = survivor.wait_for(lambda line: line.startswith("FINAL hang ") and " lost " in line)
        lost_id = line.split()[2]
        survivor.wait_for(lambda line: line.startswith("FINAL tick ") and "succeeded" in line)
        survivor.wait_for(lambda line: line.startswith("FINAL tick ") and "succeeded" in line)
    finally:
        code, err = survivor.stop()
    assert code == 0, err
    lost = next(r for r in runs_in(db, "hang") if r.id == lost_id)
    assert lost.status is RunStatus.LOST and lost.replica == "doomed"
    assert lost.reason == "lost: its replica doomed went silent past its lease"


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
