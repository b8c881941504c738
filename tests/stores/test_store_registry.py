"""Stores are plugins: a URL scheme picks the factory a plugin registered, and no URL is
ever shown with its password."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest

import xtasks
from xtasks import ConfigError, PluginError, RunStatus, Scheduler, Task
from xtasks._plugins import load_plugins
from xtasks.cli import main
from xtasks.stores import builtin_stores, open_store, redact_url
from xtasks.stores.memory import MemoryStore
from xtasks.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path

    from xtasks.abc import Store
    from xtasks.hookspecs import RegisterStore

SECRET = "hunter2secret"
#: The built-in schemes, as messages list them: one example URL each.
BUILT_IN = (
    "memory://, sqlite:///path.db, postgresql://user:pw@host/db, postgres://user:pw@host/db, "
    "redis://host:6379/0, rediss://host:6380/0"
)


class FakeBackend:
    """A plugin contributing ``fake://``: a memory store it keeps, to check it is used."""

    def __init__(self, scheme: str = "fake") -> None:
        self.scheme = scheme
        self.opened: list[tuple[str, MemoryStore]] = []

    @xtasks.hookimpl
    def xtasks_add_stores(self, register: RegisterStore) -> None:
        register(self.scheme, self.open, example=f"{self.scheme}://name")

    def open(self, url: str) -> Store:
        store = MemoryStore()
        self.opened.append((url, store))
        return store


class OtherBackend(FakeBackend):
    """A second plugin that wants the same scheme."""


class LeakyBackend:
    """A backend whose driver puts the whole URL (password included) in its errors."""

    @xtasks.hookimpl
    def xtasks_add_stores(self, register: RegisterStore) -> None:
        register("leaky", self.open)

    def open(self, url: str) -> Store:
        raise ValueError(f"could not parse DSN {url!r}")


class ConfigLeakyBackend(LeakyBackend):
    @xtasks.hookimpl
    def xtasks_add_stores(self, register: RegisterStore) -> None:
        register("leaky", self.refuse)

    def refuse(self, url: str) -> Store:
        raise ConfigError(f"bad URL {url}: no database name", field="store")


def _everything_shown(exc: BaseException) -> str:
    """What a user could ever see of ``exc``: message, repr and formatted traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


async def _ping() -> str:
    return "pong"


def test_the_built_in_stores_register_through_the_hook(tmp_path: Path) -> None:
    loaded = load_plugins(False)  # no plugins at all: the core's own is still there
    assert loaded.stores.schemes == (
        "memory",
        "sqlite",
        "postgresql",
        "postgres",
        "redis",
        "rediss",
    )
    assert loaded.stores.origin("sqlite") == "xtasks._builtin"
    assert builtin_stores().supported() == BUILT_IN
    scheduler = Scheduler(f"sqlite:///{tmp_path}/x.db?lease_ttl=4", plugins=False)
    assert isinstance(scheduler.store, SQLiteStore)
    assert scheduler.store.lease_ttl == 4.0
    assert isinstance(Scheduler("memory://", plugins=False).store, MemoryStore)


@pytest.mark.anyio
async def test_a_plugin_scheme_opens_the_store_the_scheduler_uses() -> None:
    backend = FakeBackend()
    scheduler = Scheduler("fake://orders", plugins=[backend])
    [(url, store)] = backend.opened
    assert url == "fake://orders"
    assert scheduler.store is store
    scheduler.add(Task("ping", _ping))
    async with scheduler:
        record = await (await scheduler.trigger("ping")).wait()
        stored = await store.get_run(record.id)  # the record went to the plugin's backend
    assert record.status is RunStatus.SUCCEEDED
    assert stored is not None and stored.result == "pong"


def test_a_plugin_scheme_is_case_insensitive_and_listed_for_unknown_urls() -> None:
    backend = FakeBackend()
    Scheduler("FAKE://orders", plugins=[backend])
    assert [url for url, _ in backend.opened] == ["FAKE://orders"]
    with pytest.raises(ConfigError) as info:
        Scheduler("mysql://db", plugins=[FakeBackend()])
    assert f"supported: {BUILT_IN}, fake://name" in str(info.value)


def test_two_plugins_registering_one_scheme_is_an_error_naming_both() -> None:
    with pytest.raises(PluginError) as info:
        Scheduler("memory://", plugins=[FakeBackend(), OtherBackend()])
    message = str(info.value)
    assert "store scheme 'fake://' is also registered by FakeBackend@" in message
    assert "OtherBackend@" in message and "hook xtasks_add_stores" in message
    # Left out instead when asked: the first registration stands, the second plugin is
    # degraded whole.
    first, second = FakeBackend(), OtherBackend()
    scheduler = Scheduler("fake://x", plugins=[first, second], strict_plugins=False)
    assert len(first.opened) == 1 and second.opened == []
    assert [type(p).__name__ for p in scheduler.problems] == ["PluginError"]
    assert [o.name.split("@")[0] for o in scheduler.degraded] == ["OtherBackend"]


def test_a_plugin_cannot_take_a_built_in_scheme() -> None:
    with pytest.raises(PluginError, match=r"'sqlite://' is also registered by xtasks\._builtin"):
        Scheduler("memory://", plugins=[FakeBackend("sqlite")])


@pytest.mark.parametrize("scheme", ["fake://", "", "1db", "my scheme"])
def test_a_malformed_scheme_is_an_error_naming_the_hook(scheme: str) -> None:
    with pytest.raises(PluginError, match="hook xtasks_add_stores.*URL scheme such as"):
        Scheduler("memory://", plugins=[FakeBackend(scheme)])


def test_an_unknown_scheme_lists_the_installed_ones_and_hides_the_password() -> None:
    url = f"mysql://app:{SECRET}@db.example:5432/orders"
    with pytest.raises(ConfigError) as info:
        Scheduler(url, plugins=[FakeBackend()])
    assert info.value.field == "store"
    assert "unknown store URL 'mysql://app:***@db.example:5432/orders'" in str(info.value)
    assert f"supported: {BUILT_IN}, fake://name" in str(info.value)
    assert SECRET not in _everything_shown(info.value)
    with pytest.raises(ConfigError, match="unknown store URL 'xtasks.db'"):
        open_store("xtasks.db")  # no scheme at all


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:s%40cr%2Ft@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("redis://:secret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("postgresql://u:secret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("redis://u:secret@[2001:db8::7]/0", "redis://u:***@[2001:db8::7]/0"),
        # Unencoded "@", "/" and "?" in a password: still hidden whole.
        ("postgresql://u:p@ss/w?rd@host/db", "postgresql://u:***@host/db"),
        (
            "postgresql://host/db?user=app&password=secret&sslmode=require",
            "postgresql://host/db?user=app&password=***&sslmode=require",
        ),
        ("redis://host/0?PassWord=se#cret&x=1", "redis://host/0?PassWord=***&x=1"),
        ("postgresql://h/db?sslpassword=secret", "postgresql://h/db?sslpassword=***"),
        ("redis://h/0?token=secret&api_key=secret", "redis://h/0?token=***&api_key=***"),
        # Nothing to hide: unchanged.
        ("memory://", "memory://"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://[::1]:5432/db", "postgresql://[::1]:5432/db"),
        ("sqlite:///data/x.db?max_age=60", "sqlite:///data/x.db?max_age=60"),
        ("sqlite:////srv/a:b@c/x.db", "sqlite:////srv/a:b@c/x.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent: redacting twice changes nothing


def test_a_backend_error_that_shows_the_url_is_redacted() -> None:
    url = f"leaky://app:{SECRET}@db/orders"
    with pytest.raises(PluginError) as info:
        Scheduler(url, plugins=[LeakyBackend()])
    assert "leaky:// store factory of LeakyBackend@" in str(info.value)
    assert "ValueError: could not parse DSN 'leaky://app:***@db/orders'" in str(info.value)
    assert info.value.__cause__ is None  # the original, secret and all, is not chained
    assert SECRET not in _everything_shown(info.value)
    with pytest.raises(ConfigError) as refused:
        Scheduler(url, plugins=[ConfigLeakyBackend()])
    assert (
        str(refused.value) == "field 'store': bad URL leaky://app:***@db/orders: no database name"
    )
    assert SECRET not in _everything_shown(refused.value)


def test_a_factory_must_return_a_store() -> None:
    class NotAStore(FakeBackend):
        def open(self, url: str) -> Store:
            return object()  # type: ignore[return-value]

    with pytest.raises(PluginError, match=r"returned object, not an xtasks\.abc\.Store"):
        Scheduler("fake://x", plugins=[NotAStore()])


def test_sqlite_option_errors_hide_secrets_in_the_query() -> None:
    with pytest.raises(ConfigError) as info:
        open_store(f"sqlite:///x.db?password={SECRET}")
    assert "unknown option 'password' in 'sqlite:///x.db?password=***'" in str(info.value)
    assert SECRET not in _everything_shown(info.value)


def test_log_records_show_the_url_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="xtasks")
    Scheduler(f"fake://app:{SECRET}@host/db", plugins=[FakeBackend()])
    assert "store fake://app:***@host/db opened" in caplog.text
    assert SECRET not in caplog.text


def test_the_cli_opens_plugin_schemes_and_shows_urls_redacted(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("XTASKS_PLUGINS", raising=False)
    monkeypatch.delenv("XTASKS_CONFIG", raising=False)
    caplog.set_level(logging.INFO, logger="xtasks")
    assert main(["list", "--store", f"memory://app:{SECRET}@local"]) == 0
    assert "store: memory://app:***@local" in caplog.text
    assert main(["list", "--store", f"mysql://app:{SECRET}@db/orders"]) == 2
    err = capsys.readouterr().err
    assert "unknown store URL 'mysql://app:***@db/orders'; supported: memory://" in err
    assert SECRET not in err + caplog.text
