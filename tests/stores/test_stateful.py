"""The SQLite, PostgreSQL and Redis stores agree with the memory store, step by step, in
random histories."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
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


class PostgresMachine(StoreMachine):
    """A new PostgreSQL schema per example, dropped at teardown. Leases run on the
    server's clock, which the machine cannot move: the real-time contract checks cover
    them (``store_time`` stays false)."""

    def make_store(self) -> Store:
        from tests._services import postgres_url
        from tests.stores._postgres import new_schema
        from xtasks.stores.postgres import PostgresStore

        self._url, self._schema = postgres_url(), new_schema()
        return PostgresStore(self._url, schema=self._schema, lease_ttl=self.lease_ttl)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if getattr(self, "_schema", None):
                from tests.stores._postgres import drop_schema

                drop_schema(self._url, self._schema)


class PostgresTrioMachine(PostgresMachine):
    anyio_backend = "trio"


#: Machines on a server: fewer, shorter examples (each step is a round trip), no deadline.
_SERVER_SETTINGS = settings(max_examples=30, stateful_step_count=20, deadline=None)
PostgresMachine.TestCase.settings = _SERVER_SETTINGS
PostgresTrioMachine.TestCase.settings = _SERVER_SETTINGS
TestPostgresStore = pytest.mark.external_service(PostgresMachine.TestCase)
TestPostgresStoreOnTrio = pytest.mark.external_service(PostgresTrioMachine.TestCase)


class RedisMachine(StoreMachine):
    """A key prefix of its own per example, its keys deleted at teardown. Leases are on
    Redis ``TIME``, which the machine cannot move: the contract's real-time checks cover them."""

    def make_store(self) -> Store:
        from tests._services import redis_url
        from tests.stores._redis import redis_prefix
        from xtasks.stores.redis import RedisStore

        url = redis_url()
        self._keys = ExitStack()  # deletes the prefix's keys at teardown
        prefix = self._keys.enter_context(redis_prefix())
        return RedisStore(url, prefix=prefix, lease_ttl=self.lease_ttl)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._keys.close()


class TrioRedisMachine(RedisMachine):
    anyio_backend = "trio"


RedisMachine.TestCase.settings = _SERVER_SETTINGS
TrioRedisMachine.TestCase.settings = _SERVER_SETTINGS
TestRedisStore = pytest.mark.external_service(RedisMachine.TestCase)
TestRedisStoreTrio = pytest.mark.external_service(TrioRedisMachine.TestCase)
