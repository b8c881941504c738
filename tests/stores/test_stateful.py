"""The SQLite store agrees with the memory store, step by step, in random histories."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import settings

from xtasks.stores.sqlite import SQLiteStore
from xtasks.testing import StoreMachine

if TYPE_CHECKING:
    from xtasks.abc import Store


class SQLiteMachine(StoreMachine):
    """A new SQLite file per example, removed at teardown; leases on the machine's time."""

    store_time = True

    def make_store(self) -> Store:
        self._tmp = tempfile.TemporaryDirectory(prefix="xtasks-machine-")
        path = Path(self._tmp.name) / "xtasks.db"
        return SQLiteStore(path, lease_ttl=self.lease_ttl, clock=self.clock)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._tmp.cleanup()


SQLiteMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)
TestSQLiteStore = SQLiteMachine.TestCase
