"""Store URLs: the scheme picks the backend, the query sets its options."""

from __future__ import annotations

import pytest

from xtasks import ConfigError
from xtasks.stores import open_store
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
    ],
)
def test_bad_urls_say_what_is_expected(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert words in str(info.value)
