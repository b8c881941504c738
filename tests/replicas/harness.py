"""Replica processes for the multi-process tests, and reading what they stored.

Every replica is a real ``python -m tests.replicas.app`` on a store URL; the tests
synchronise on the lines it prints, never on sleeps.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from xtasks.stores import open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks import RunRecord

__all__ = ["ROOT", "PrintedLines", "Replica", "every_run", "nth", "runs_in"]

ROOT = Path(__file__).resolve().parent.parent.parent


class PrintedLines:
    """A child process's stdout, queued line by line as it comes, and its stderr, drained
    as it comes too: a child that logs more than a pipe holds (one warning per reaped run,
    say) would otherwise block on its next write."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    seen: list[str]
    errors: list[str]

    def _start_reading(self) -> tuple[threading.Thread, threading.Thread]:
        self.errors = []
        readers = (
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        )
        for reader in readers:
            reader.start()
        return readers

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self.errors.extend(self.proc.stderr)

    def _next_match(self, match: Callable[[str], bool], timeout: float) -> str | None:
        """The next line ``match`` accepts (those before it are kept in ``seen``), or
        ``None`` once ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match(line):
                return line
        return None


class Replica(PrintedLines):
    """One replica process and the lines it printed."""

    def __init__(
        self,
        store: str | Path,
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
                "XTASKS_TEST_STORE": store if isinstance(store, str) else f"sqlite:///{store}",
                "XTASKS_TEST_REPLICA": name,
                **(env or {}),
            },
        )
        self.reader, self.err_reader = self._start_reading()
        self.wait_for(lambda line: line == f"READY {name}")

    def wait_for(self, match: Callable[[str], bool], timeout: float = 30) -> str:
        line = self._next_match(match, timeout)
        if line is None:
            _, err = self.stop()
            raise AssertionError(f"{self.name} never printed the line; stderr:\n{err}")
        return line

    def command(self, action: str, task: str) -> None:
        """Have the replica ``pause``, ``resume`` or ``cancel`` ``task``; wait till it did."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{action} {task}\n")
        self.proc.stdin.flush()
        self.wait_for(lambda line: line == f"DONE {action} {task}")

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


def _url(store: str | Path) -> str:
    return store if isinstance(store, str) else f"sqlite:///{store}"


def runs_in(db: str | Path, task: str) -> list[RunRecord]:
    """The runs of ``task`` stored at ``db`` (a store URL, or an SQLite file's path)."""

    async def read() -> list[RunRecord]:
        store = open_store(_url(db))
        await store.open()
        try:
            return await store.list_runs(task=task, limit=100_000)
        finally:
            await store.close()

    return anyio.run(read)


def every_run(db: str | Path) -> list[RunRecord]:
    """Every run stored at ``db`` (a store URL, or an SQLite file's path)."""

    async def read() -> list[RunRecord]:
        store = open_store(_url(db))
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
