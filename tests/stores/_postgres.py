"""A PostgreSQL schema per test: tests run repeatedly, and beside other runs on one server."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from tests._services import postgres_url

if TYPE_CHECKING:
    from collections.abc import Iterator


def new_schema() -> str:
    """A schema name no other test uses."""
    return "xt_" + uuid.uuid4().hex[:16]


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def isolated_schema() -> Iterator[tuple[str, str]]:
    """The server's URL and a fresh schema name; the schema is dropped at the end."""
    url = postgres_url()
    schema = new_schema()
    try:
        yield url, schema
    finally:
        drop_schema(url, schema)
