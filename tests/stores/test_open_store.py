"""Store URLs: the scheme picks the backend, the query sets its options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xtasks import ConfigError
from xtasks.stores import StoreRegistry, open_store
from xtasks.stores.memory import MemoryStore
from xtasks.stores.sqlite import SQLiteStore


def test_memory_and_sqlite_urls() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    store = open_store("sqlite:///data/x.db?max_runs_per_task=500&max_age=86400&lease_ttl=5")
    assert isinstance(store, SQLiteStore)
    assert (store.max_runs_per_task, store.max_age, store.lease_ttl) == (500, 86400.0, 5.0)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://x.db", "expected sqlite:///relative/path.db"),
        ("sqlite:///", "expected sqlite:///relative/path.db"),
        ("sqlite:///x.db?max_run=5", "unknown option 'max_run'"),
        (
            "sqlite:///x.db?max_age=soon",
            "option 'max_age' in 'sqlite:///x.db?max_age=soon' must be a float",
        ),
        ("mysql://db", "unknown store URL 'mysql://db'; supported: memory://, sqlite:///path.db"),
        ("mysql://root:pw1234@db/x", "unknown store URL 'mysql://root:***@db/x'"),
        ("sqlite:///x.db?lease_ttl=-1", "field 'lease_ttl': must be > 0 seconds"),
    ],
)
def test_bad_urls_say_what_is_expected(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert words in str(info.value)


def test_open_store_chooses_among_the_registry_it_is_given() -> None:
    """A scheduler passes the schemes its plugins registered; the default is the built-ins."""
    stores = StoreRegistry()
    made: list[str] = []

    def factory(url: str) -> MemoryStore:
        made.append(url)
        return MemoryStore()

    stores.register("mem", factory, example="mem://name")
    assert isinstance(open_store("mem://a", stores), MemoryStore)
    assert made == ["mem://a"]
    with pytest.raises(ConfigError, match=r"unknown store URL 'memory://'; supported: mem://name"):
        open_store("memory://", stores)
    with pytest.raises(ConfigError, match="unknown store URL 'mem://a'"):
        open_store("mem://a")


def test_the_durability_guide_states_the_sqlite_defaults() -> None:
    """The guide's table of store options says each default; a SQLite store opened from a
    bare URL has exactly those."""
    guide = (Path(__file__).parents[2] / "docs" / "guides" / "durability.md").read_text()
    option_rows = r"^\| `(\w+)=[A-Z]+` \| [^|]+ \| ([^|]+) \|$"
    rows = dict(re.findall(option_rows, guide, re.MULTILINE))
    store = open_store("sqlite:///x.db")
    assert isinstance(store, SQLiteStore)
    assert (float(rows["lease_ttl"]), float(rows["busy_timeout"])) == (
        store.lease_ttl,
        store.busy_timeout,
    )
    assert "SQLite and PostgreSQL: the whole history" in rows["max_runs_per_task"]
    assert store.max_runs_per_task is None
    assert rows["max_age"].strip() == "none" and store.max_age is None
