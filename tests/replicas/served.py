"""``uvicorn tests.replicas.web:app --workers N`` on a store: the README's deployment.

The workers share the server's stdout, on which each prints the lines
:mod:`tests.replicas.web` describes; :class:`Served` collects them in one stream, and the
tests (and ``tools/state_propagation.py``) wait on them, never on sleeps. Every request
goes over a fresh connection unless it is made on a :meth:`Served.client` kept open, so
the kernel picks the worker that answers, as it does for a user's browser.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests._services import fresh_store

from .harness import ROOT, PrintedLines

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = ["STORES", "TICK", "TOKEN", "Served", "free_port", "served_on", "worker"]

#: The manager's bearer token in these tests.
TOKEN = "fleet-state-test-token"
#: Seconds between two fires of the app's ``tick``: the issue's schedule.
TICK = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(client: httpx.Client) -> str:
    """The pid of the worker serving ``client``'s connection."""
    return client.get("/ready").headers["X-Worker"]


class Served(PrintedLines):
    """A ``uvicorn --workers`` server of :mod:`tests.replicas.web` and the lines its
    workers printed. Returns once every worker's scheduler runs."""

    def __init__(self, store: str, *, workers: int = 3, timeout: float = 150) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "tests.replicas.web:app"),
                *("--workers", str(workers), "--port", str(self.port)),
                *("--log-level", "warning", "--timeout-graceful-shutdown", "5"),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "XTASKS_TEST_STORE": store,
                "XTASKS_TEST_TOKEN": TOKEN,
                "XTASKS_TEST_TICK": str(TICK),
            },
        )
        self._readers = self._start_reading()
        self.pids: list[str] = []
        try:
            # A worker imports FastAPI and xtasks afresh (spawned, not forked): seconds of
            # CPU each, most of a minute on a loaded machine.
            deadline = time.monotonic() + timeout
            while len(self.pids) < workers:
                left = deadline - time.monotonic()
                line = self.wait_for(lambda line: line.startswith("READY "), left)
                self.pids.append(line.split()[1])
        except BaseException:
            self.stop()
            raise

    def wait_for(self, match: Callable[[str], bool], timeout: float = 30) -> str:
        """The next line ``match`` accepts (those before it are kept in ``seen``)."""
        line = self._next_match(match, timeout)
        if line is None:
            raise AssertionError(
                f"no worker printed the line within {timeout} s; stderr:\n" + "".join(self.errors)
            )
        return line

    def drain(self) -> list[str]:
        """Every line printed so far, now in ``seen``."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def arrivals(self, change: str, since: int = 0) -> dict[str, float]:
        """When each worker printed ``STATE <change> <pid> <time>`` after line ``since`` of
        ``seen``, by pid: the change's arrival there. Waits for the workers that did not yet."""
        arrived: dict[str, float] = {}

        def note(line: str) -> bool:
            if line.startswith(f"STATE {change} "):
                pid, at = line.split()[-2:]
                arrived.setdefault(pid, float(at))
            return len(arrived) == len(self.pids)

        for line in self.seen[since:]:
            note(line)
        if len(arrived) < len(self.pids):
            try:
                self.wait_for(note, timeout=30)
            except AssertionError as exc:
                states = [line for line in self.drain() if line.startswith("STATE ")]
                raise AssertionError(f"{change} reached only {sorted(arrived)}: {states}") from exc
        return arrived

    def client(self) -> httpx.Client:
        """A client with the manager's token; its connection stays with one worker."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def fresh(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` on a connection of its own: any worker may answer."""
        with self.client() as client:
            return client.request(method, path, **kwargs)

    def clients_on_two_workers(self, tries: int = 200) -> tuple[httpx.Client, httpx.Client]:
        """Two open clients whose connections two different workers serve."""
        opened: list[httpx.Client] = []
        kept: tuple[httpx.Client, httpx.Client] | None = None
        try:
            first = self.client()
            opened.append(first)
            first_pid = worker(first)
            for _ in range(tries):
                client = self.client()
                opened.append(client)
                if worker(client) != first_pid:
                    kept = (first, client)
                    return kept
            raise AssertionError(f"{tries} fresh connections all reached one worker")
        finally:
            for client in opened:
                if kept is None or client not in kept:
                    client.close()

    def stop(self) -> tuple[int, str]:
        """SIGTERM the server (its workers stop their schedulers gracefully) and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.drain()
        return self.proc.returncode, "".join(self.errors)


#: The stores a fleet test runs on (PostgreSQL and Redis as CI's external services).
STORES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.external_service),
    pytest.param("redis", marks=pytest.mark.external_service),
]


@contextmanager
def served_on(store: str, tmp_path: Path) -> Iterator[Served]:
    """Three web workers on a fresh store of this kind; they must stop cleanly."""
    with fresh_store(store, tmp_path) as url:
        server = Served(url)
        try:
            yield server
        finally:
            code, err = server.stop()
        assert code == 0, err
