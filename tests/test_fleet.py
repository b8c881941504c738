"""A fleet: several replica processes on one shared store, each due fire run once.

Every backend that serves several processes is tested the same way: one SQLite file (one
host), PostgreSQL and Redis (many hosts). Each replica is a real OS process
(``tests.replicas.app``); besides the store, each appends what it executed to its own log
file, and exactly-once is checked offline from those files too, not only from the records.
"""

from __future__ import annotations

import queue
import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

from xtasks import RunStatus

from ._proxy import TcpProxy
from ._services import fresh_store
from .replicas.harness import Replica, nth, runs_in

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

TICK = 0.25  # seconds between two fires of the fleet's `tick`


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty shared store, removed afterwards: a file, a schema or a key prefix."""
    with fresh_store(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=["postgres", "redis"])
def server_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """As :func:`store_url`, on the backends reached over a network connection."""
    with fresh_store(request.param, tmp_path) as url:
        yield url


def executions(
    logs: list[Path],
) -> tuple[dict[str, list[tuple[str, str]]], Counter[tuple[str, str]]]:
    """What the replicas' own logs say: per task, the ``(fire time, replica)`` of every run
    they stored running; and per ``(replica, task)``, how many bodies ran."""
    runs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    bodies: Counter[tuple[str, str]] = Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            words = line.split()
            if words[0] == "RUN":
                runs[words[1]].append((words[2], log.stem))
            else:
                bodies[log.stem, words[1]] += 1
    return runs, bodies


def test_three_replicas_run_every_fire_exactly_once(store_url: str, tmp_path: Path) -> None:
    lines: queue.Queue[str] = queue.Queue()  # one stream for the whole fleet
    logs = [tmp_path / f"replica-{i}.log" for i in range(3)]
    replicas = [
        Replica(
            store_url,
            log.stem,
            lines=lines,
            env={"XTASKS_TEST_TASKS": "fleet", "XTASKS_TEST_LOG": str(log)},
        )
        for log in logs
    ]
    try:
        replicas[0].wait_for(nth(16, "FINAL tick "))  # about 4 s of 0.25 s fires
    finally:
        results = [r.stop() for r in replicas]
    assert [code for code, _ in results] == [0, 0, 0], results

    logged, bodies = executions(logs)
    for task in ("tick", "tock", "chore"):
        fires = [fire for fire, _ in logged[task]]
        assert len(fires) >= 5, (task, fires)
        duplicates = [fire for fire, n in Counter(fires).items() if n > 1]
        assert not duplicates, f"{task}: these fires ran on more than one replica: {duplicates}"
        for log in logs:  # each run stored running here ran its body here, once
            ran = sum(1 for _, where in logged[task] if where == log.stem)
            assert bodies[log.stem, task] == ran, (task, log.stem)
        stored = [r for r in runs_in(store_url, task) if r.status is not RunStatus.CANCELLED]
        assert all(r.status is RunStatus.SUCCEEDED for r in stored), stored
        assert sorted(r.scheduled_at.isoformat() for r in stored) == sorted(fires)
    ticks = sorted(datetime.fromisoformat(fire) for fire, _ in logged["tick"])
    gaps = {b - a for a, b in pairwise(ticks)}
    assert gaps == {timedelta(seconds=TICK)}, f"tick's fires missed or off the grid: {gaps}"
    workers = {where for task in logged.values() for _, where in task}
    assert len(workers) >= 2, "the fires were not spread over the replicas"


def test_a_killed_replica_s_run_is_lost_and_the_others_keep_firing(store_url: str) -> None:
    env = {"XTASKS_TEST_LEASE": "0.6"}
    doomed = Replica(store_url, "doomed", env={"XTASKS_TEST_TASKS": "hang", **env})
    doomed.wait_for(lambda line: line == "STARTED hang")
    survivor = Replica(store_url, "survivor", env={"XTASKS_TEST_TASKS": "tick,hang", **env})
    try:
        doomed.kill()
        line = survivor.wait_for(lambda line: line.startswith("FINAL hang ") and " lost " in line)
        lost_id = line.split()[2]
        survivor.wait_for(nth(2, "FINAL tick "))
    finally:
        code, err = survivor.stop()
    assert code == 0, err
    lost = next(r for r in runs_in(store_url, "hang") if r.id == lost_id)
    assert lost.status is RunStatus.LOST and lost.replica == "doomed"
    assert lost.reason == "lost: its replica doomed went silent past its lease"
    fires = [r.scheduled_at for r in runs_in(store_url, "tick")]
    assert len(fires) == len(set(fires))


def test_a_replica_paused_past_its_lease_is_fenced_and_rejoins_without_a_duplicate(
    store_url: str,
) -> None:
    """SIGSTOP a replica running a long run; the other reaps it as lost. After SIGCONT the
    sleeper's late write of that run is refused, and its timer, late by the whole pause,
    claims no fire the other ran."""
    env = {"XTASKS_TEST_LEASE": "0.6", "XTASKS_TEST_TASKS": "tick,hang"}
    lines: queue.Queue[str] = queue.Queue()
    sleeper = Replica(store_url, "sleeper", lines=lines, env=env)
    sleeper.wait_for(lambda line: line == "STARTED hang")
    other = Replica(store_url, "other", env=env)
    try:
        sleeper.proc.send_signal(signal.SIGSTOP)
        line = other.wait_for(lambda line: line.startswith("FINAL hang ") and " lost " in line)
        lost_id = line.split()[2]
        other.wait_for(nth(4, "FINAL tick "))
        while not lines.empty():  # what the sleeper printed before it was stopped
            lines.get()
        sleeper.proc.send_signal(signal.SIGCONT)
        sleeper.wait_for(lambda line: line.startswith("FINAL tick ") and " succeeded " in line)
        other.wait_for(nth(4, "FINAL tick "))
    finally:
        sleeper.proc.send_signal(signal.SIGCONT)
        (code, err), (other_code, other_err) = sleeper.stop(), other.stop()
    assert (code, other_code) == (0, 0), (err, other_err)
    lost = next(r for r in runs_in(store_url, "hang") if r.id == lost_id)
    assert (lost.status, lost.replica) == (RunStatus.LOST, "sleeper"), lost
    assert f"run {lost_id} was marked lost by another replica" in err
    ticks = [r for r in runs_in(store_url, "tick") if r.status is not RunStatus.MISSED]
    fires = Counter(r.scheduled_at for r in ticks)
    assert not [fire for fire, n in fires.items() if n > 1], "a fire ran twice"
    assert {r.replica for r in ticks} == {"sleeper", "other"}


def test_a_cancel_on_one_replica_stops_the_task_on_every_replica_within_a_second(
    store_url: str,
) -> None:
    env = {"XTASKS_TEST_TASKS": "fleet"}
    replicas = [Replica(store_url, f"r{i}", env=env) for i in range(3)]  # a stream each
    try:
        replicas[0].wait_for(nth(2, "FINAL tick "))
        replicas[1].command("cancel", "tick")
        cancelled_at = datetime.now(UTC)
        for replica in replicas:  # each says it applied the cancel...
            if "STATE tick cancelled" not in replica.seen:
                replica.wait_for(lambda line: line == "STATE tick cancelled")
        replicas[2].wait_for(nth(3, "FINAL tock "))  # ...and the fleet goes on a while
    finally:
        results = [r.stop() for r in replicas]
    assert [code for code, _ in results] == [0, 0, 0], results
    late = [
        r
        for r in runs_in(store_url, "tick")
        if r.started_at is not None and r.started_at > cancelled_at + timedelta(seconds=1)
    ]
    assert not late, f"tick still ran after the cancel: {late}"


def through(proxy_port: int, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy_port}" if credentials else f"127.0.0.1:{proxy_port}"
    return urlunsplit(parts._replace(netloc=netloc))


def health(replica: Replica) -> str:
    replica.command("health", "-")
    return next(line for line in reversed(replica.seen) if line.startswith("HEALTH "))


def test_a_cut_database_connection_is_survived(server_store_url: str) -> None:
    """Every connection to the server is cut for a few seconds (a proxy in between): no
    replica exits, each says its store is failing, then writes again; no fire is claimed
    twice, and the fires of the outage are run late or recorded missed, not lost."""
    store_url = server_store_url
    parts = urlsplit(store_url)
    with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 0)) as proxy:
        url = through(proxy.port, store_url)
        env = {"XTASKS_TEST_TASKS": "tick", "XTASKS_TEST_GRACE": "0.5"}
        replicas = [Replica(url, f"r{i}", env=env) for i in range(2)]
        try:
            replicas[0].wait_for(nth(2, "FINAL tick "))
            proxy.cut()
            cut_at = datetime.now(UTC)
            deadline = time.monotonic() + 20
            for replica in replicas:
                while health(replica) != "HEALTH failing":
                    assert time.monotonic() < deadline, f"{replica.name} never saw the outage"
                    time.sleep(0.2)
            time.sleep(2)  # the outage lasts: fires come due meanwhile
            proxy.restore()
            restored_at = datetime.now(UTC)
            for replica in replicas:
                while health(replica) != "HEALTH writable":
                    assert time.monotonic() < deadline + 20, f"{replica.name} never recovered"
                    time.sleep(0.2)
            for replica in replicas:
                replica.wait_for(
                    lambda line: line.startswith("FINAL tick ") and "succeeded" in line
                )
        finally:
            results = [r.stop() for r in replicas]
    assert [code for code, _ in results] == [0, 0], results
    ticks = runs_in(store_url, "tick")
    fires = Counter(r.scheduled_at for r in ticks)
    assert not [fire for fire, n in fires.items() if n > 1], "a fire was claimed twice"
    during = [r for r in ticks if cut_at < r.scheduled_at < restored_at]
    missed = [r for r in ticks if r.status is RunStatus.MISSED]
    assert during or missed, "the fires of the outage were neither run nor recorded missed"
