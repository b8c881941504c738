"""Errors and warnings speak the interface the user is in: HTTP, seed dicts, Python, YAML;
and a store URL's password shows nowhere (errors, reprs, logs, the command line)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
import types
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

import xtasks
from xtasks import (
    ConfigError,
    ConfigFileError,
    Every,
    PluginError,
    Scheduler,
    ShortIntervalWarning,
    Task,
)
from xtasks.stores.memory import MemoryStore
from xtasks.testing._delegating import DelegatingStore
from xtasks_fastapi import bearer_token, manager_router

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hints-manager-token-0123456789abcdef"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "hunter2"
URL = f"mysql://u:{PASSWORD}@db/x"  # a scheme a plugin of the test registers


def plain() -> None:
    pass


async def coroutine() -> None:
    pass


# --- HTTP: a 409 names the route to call -----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["pause", "cancel"])
async def test_a_409_over_http_says_which_route_resumes_the_task(action: str) -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("report", coroutine))
    app = FastAPI()
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await getattr(scheduler, action)("report")
        refused = await client.post("/manager/tasks/report/run", headers=WRITE)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    state = "paused" if action == "pause" else "cancelled"
    assert f"'report' is {state}" in detail
    assert "resume it (POST /manager/tasks/report/resume)" in detail
    assert "scheduler." not in detail  # no Python call over HTTP


# --- seed format: "async" explained in seed keys ----------------------------------------------


def test_seed_async_true_on_a_plain_function_is_explained_in_seed_keys() -> None:
    plugin = types.ModuleType("seedplug")
    plugin.PLUGIN_TASKS = [{"name": "sync_donnees", "function": plain, "async": True}]  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as info:
        Scheduler(plugins=[plugin])
    message = str(info.value)
    assert "PLUGIN_TASKS[0]" in message and "'sync_donnees'" in message
    assert f"{__name__}:plain is a plain (synchronous) function" in message
    assert "drop the 'async' key" in message and "make the function 'async def'" in message
    assert "mode=" not in message  # Task's Python field, not a seed key


# --- Task(...) in Python: a misspelt option ---------------------------------------------------


def test_a_misspelt_task_option_is_a_config_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        Task("nightly", plain, max_retry=3)  # type: ignore[call-arg]
    assert (info.value.task, info.value.field) == ("nightly", "max_retry")
    assert "did you mean 'max_retries'?" in str(info.value)
    assert str(info.value).startswith("task 'nightly', field 'max_retry':")


def test_an_option_like_nothing_known_lists_the_known_options() -> None:
    with pytest.raises(ConfigError, match="known options: args, kwargs, trigger, priority"):
        Task("nightly", plain, frobnicate=True)  # type: ignore[call-arg]


def test_options_after_name_and_func_must_be_keywords() -> None:
    with pytest.raises(ConfigError, match="pass the rest by keyword, e.g. trigger="):
        build: Any = Task  # mypy refuses this call already
        build("nightly", plain, Every(hours=1))


# --- plugins: a cycle is reported once --------------------------------------------------------


def _cyclic_plugin() -> types.ModuleType:
    plugin = types.ModuleType("cycleplug")
    plugin.PLUGIN_TASKS = [  # type: ignore[attr-defined]
        {"name": "extract", "function": plain, "depends_on": ["load"]},
        {"name": "load", "function": plain, "depends_on": ["extract"]},
        {"name": "report", "function": plain},
    ]
    return plugin


def test_a_cycle_inside_one_plugin_is_reported_once() -> None:
    with pytest.raises(PluginError) as info:
        Scheduler(plugins=[_cyclic_plugin()])
    message = str(info.value)
    assert "dependency cycle load -> extract -> load" in message
    assert "more problem" not in message and "not a registered task" not in message


def test_check_lists_a_plugins_cycle_once_and_keeps_its_other_tasks() -> None:
    scheduler = Scheduler(plugins=[_cyclic_plugin()], strict_plugins=False)
    problems = [str(p) for p in scheduler.check()]
    assert len(problems) == 1, problems
    assert "dependency cycle load -> extract -> load" in problems[0]
    assert list(scheduler.tasks) == ["report"]


# --- YAML: indentation and tabs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "says"),
    [
        ("tasks:\n\texport:\n    max_retries: 3\n", 2, 1, "a tab character"),
        ("tasks:\n  export:\n    max_retries: 3\n   enabled: true\n", 4, 4, "indented by 3"),
        ("tasks:\n  export:\n    max_retries: 3\n      enabled: true\n", 4, 7, "deeper than"),
    ],
)
def test_a_yaml_indentation_or_tab_error_says_so(
    tmp_path: Path, text: str, line: int, column: int, says: str
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        Scheduler(plugins=False, config=path)
    assert (info.value.line, info.value.column) == (line, column)
    assert says in str(info.value)
    assert "quote" not in str(info.value)
    assert "spaces" in str(info.value)


def test_a_value_with_a_colon_still_suggests_quoting(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("tasks:\n  export:\n    description: note: nightly\n")
    with pytest.raises(ConfigFileError, match="quote a value that contains ': '") as info:
        Scheduler(plugins=False, config=path)
    assert info.value.line == 3


# --- ShortIntervalWarning: the task's name, the user's line -----------------------------------


def test_short_interval_warns_at_the_users_own_line() -> None:
    with pytest.warns(ShortIntervalWarning, match="under 5 s") as record:
        task = Task("tick", plain, trigger=Every(seconds=1))
    assert [w.filename for w in record] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.replace(max_retries=2)  # once per trigger, not again on every copy


def test_short_interval_from_a_seed_entry_names_the_task_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """\
        def tick():
            pass


        PLUGIN_TASKS = [
            {"name": "slow", "function": tick, "interval_seconds": 60},
            {
                "name": "fast",
                "function": tick,
                "interval_seconds": 2,
            },
        ]
    """
    (tmp_path / "hint_seed_plugin.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    import hint_seed_plugin  # type: ignore[import-not-found]

    with pytest.warns(ShortIntervalWarning) as record:
        Scheduler(plugins=[hint_seed_plugin])
    assert len(record) == 1
    assert "task 'fast': Every(seconds=2)" in str(record[0].message)
    assert "PLUGIN_TASKS[1]" in str(record[0].message)
    assert (record[0].filename, record[0].lineno) == (str(tmp_path / "hint_seed_plugin.py"), 10)


def test_short_interval_from_yaml_names_the_task_at_the_files_line(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("tasks:\n  tick:\n    enabled: true\n    interval_seconds: 0.5\n")
    scheduler = Scheduler(plugins=False, config=path)
    with pytest.warns(ShortIntervalWarning) as record:
        scheduler.add(Task("tick", plain, trigger=Every(hours=1)))
    assert len(record) == 1
    assert "task 'tick': Every(seconds=0.5)" in str(record[0].message)
    assert (record[0].filename, record[0].lineno) == (str(path), 4)


# --- secrets in store URLs --------------------------------------------------------------------


def _everything_shown(exc: BaseException) -> str:
    """What a user may see of an error: its message, repr and whole printed traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.mark.parametrize(
    ("url", "secret", "shown"),
    [
        (f"oracle://u:{PASSWORD}@db/x", PASSWORD, "oracle://u:***@db/x"),
        (f"oracle://db/x?sslmode=require&password={PASSWORD}", PASSWORD, "password=***"),
        (f"amqps://:{PASSWORD}@queue:5671/0", PASSWORD, "amqps://:***@queue:5671/0"),
        ("oracle://u:hunt@r2@db/x", "hunt@r2", "oracle://u:***@db/x"),  # unencoded @
    ],
)
def test_an_unknown_store_url_never_shows_its_password(
    caplog: pytest.LogCaptureFixture, url: str, secret: str, shown: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        Scheduler(url, plugins=False)
    assert shown in str(info.value)
    assert secret not in _everything_shown(info.value)
    assert secret not in caplog.text


class _Refusing:
    """A ``mysql://`` factory that echoes the URL it refuses, as careless code does."""

    @xtasks.hookimpl
    def xtasks_add_stores(self, register: Any) -> None:
        def refuse(url: str) -> MemoryStore:
            raise ValueError(f"cannot parse {url}: no such option")

        register("mysql", refuse, example="mysql://host/db")


def test_a_store_factory_that_echoes_the_url_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PluginError) as info:
        Scheduler(URL, plugins=[_Refusing()])
    assert "cannot parse" in str(info.value)
    assert PASSWORD not in _everything_shown(info.value)
    assert PASSWORD not in caplog.text


class _Unreachable(DelegatingStore[MemoryStore]):
    """A PostgreSQL store whose server is down: open() fails as a driver's would."""

    def __init__(self, url: str) -> None:
        super().__init__(MemoryStore())
        self.url = url

    async def open(self) -> None:
        raise ConnectionRefusedError(
            "connection to server at 'db' (10.0.0.9), port 5432 failed: Connection refused"
        )


class _FakePostgres:
    @xtasks.hookimpl
    def xtasks_add_stores(self, register: Any) -> None:
        register("mysql", _Unreachable, example="mysql://host/db")


@pytest.mark.anyio
async def test_a_store_that_cannot_connect_never_shows_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    scheduler = Scheduler(URL, plugins=[_FakePostgres()])
    scheduler.add(Task("tick", coroutine, trigger=Every(hours=1)))
    shown = [repr(scheduler), str(scheduler), repr(scheduler.store)]
    with pytest.raises(BaseException) as info:  # whatever it is: without the password
        with anyio.fail_after(10):
            async with scheduler:
                pass
    assert "Connection refused" in _everything_shown(info.value)
    shown.append(_everything_shown(info.value))
    assert not [text for text in shown if PASSWORD in text]
    assert PASSWORD not in caplog.text


def _install_unreachable_mysql(site: Path) -> None:
    """A throwaway plugin distribution registering ``mysql://`` (found like pip's)."""
    (site / "hint_pg").mkdir()
    (site / "hint_pg" / "__init__.py").write_text(
        textwrap.dedent(
            """\
            import xtasks
            from xtasks.stores.memory import MemoryStore

            class Unreachable(MemoryStore):
                async def open(self):
                    raise ConnectionRefusedError("connection to server at 'db' failed")

            @xtasks.hookimpl
            def xtasks_add_stores(register):
                register("mysql", lambda url: Unreachable(), example="mysql://h/db")
            """
        )
    )
    info = site / "hint_pg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hint-pg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[xtasks]\nhint_pg = hint_pg\n")


@pytest.mark.parametrize("command", [["check"], ["-v", "check"], ["list"], ["-v", "run"]])
@pytest.mark.parametrize("installed", [False, True], ids=["unknown-scheme", "unreachable"])
def test_the_cli_never_shows_a_store_password(
    tmp_path: Path, command: list[str], installed: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XTASKS_")}
    env["XTASKS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if installed:
        _install_unreachable_mysql(tmp_path)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
        env["XTASKS_PLUGINS"] = "hint_pg"
    result = subprocess.run(
        [sys.executable, "-m", "xtasks", *command, "--store", URL],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert PASSWORD not in result.stdout + result.stderr
    if not installed:
        assert "mysql://u:***@db/x" in result.stdout + result.stderr
