"""Plugins as installed distributions: real ``.dist-info`` entry points on a temporary path.

Nothing monkeypatches the loader: each test writes a package and its distribution
metadata to ``tmp_path``, puts that on ``sys.path``, and ``importlib.metadata`` finds it
the way it finds anything ``pip`` installed.
"""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import xtasks
import xtasks.hookspecs
from xtasks import (
    ConfigFileError,
    DuplicateTaskError,
    Every,
    PluginError,
    RunStatus,
    Scheduler,
    Task,
)


class Distributions:
    """Writes throwaway plugin distributions into one site directory on ``sys.path``."""

    def __init__(self, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.site = site
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []

    def install(
        self,
        dist: str,
        package: str,
        source: str,
        *,
        config: str | None = None,
        entry_point: str | None = None,
        target: str | None = None,
    ) -> None:
        pkg = self.site / package
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(source))
        if config is not None:
            (pkg / "config.yaml").write_text(textwrap.dedent(config))
        info = self.site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"[xtasks]\n{entry_point or package} = {target or package}\n"
        )
        self.modules.append(package)
        importlib.invalidate_caches()


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("XTASKS_PLUGINS", raising=False)
    monkeypatch.delenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("XTASKS_CONFIG", raising=False)
    d = Distributions(site, monkeypatch)
    yield d
    for name in d.modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
    importlib.invalidate_caches()


SEED_PLUGIN = """
    async def nettoyer():
        return "propre"

    def stats():
        return 42

    PLUGIN_TASKS = [
        {"name": "billing_cleanup", "function": nettoyer, "interval_seconds": 3600,
         "async": True, "priority": "haute", "max_retries": 1},
        {"name": "billing_stats", "function": stats, "cron": "0 3 * * *",
         "depends_on": ["billing_cleanup"], "retry_delay_seconds": 30, "timeout_seconds": 60,
         "alert_on_failure": False},
    ]
"""


def test_seed_format_plugin_tasks_appear_with_their_origin(dists: Distributions) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    scheduler = Scheduler(plugins=["xcore-billing"])
    cleanup = scheduler.tasks["billing_cleanup"]
    assert cleanup.trigger == Every(hours=1)
    assert (cleanup.priority.value, cleanup.max_retries, cleanup.mode.value) == ("high", 1, "async")
    stats = scheduler.tasks["billing_stats"]
    assert stats.depends_on == ("billing_cleanup",)
    assert (stats.retry_delay, stats.timeout, stats.alert_on_failure) == (30, 60, False)
    origin = scheduler.task_origins["billing_stats"]
    assert origin.distribution == "xcore-billing 1.0"
    assert origin.entry_point == "xcore_billing = xcore_billing"


def test_plugin_config_then_app_config_override_by_name(
    dists: Distributions, tmp_path: Path
) -> None:
    dists.install(
        "xcore-billing",
        "xcore_billing",
        SEED_PLUGIN,
        config="""
            tasks:
              billing_cleanup:
                max_retries: 5
                interval_seconds: 600
              billing_stats:
                timeout_seconds: 120
        """,
    )
    app = tmp_path / "app.yaml"
    app.write_text(
        "tasks:\n  billing_cleanup:\n    max_retries: 7\n  billing_stats:\n    enabled: false\n"
    )
    scheduler = Scheduler(plugins=["xcore-billing"], config=app)
    cleanup = scheduler.tasks["billing_cleanup"]
    assert cleanup.max_retries == 7  # the application's file wins
    assert isinstance(cleanup.trigger, Every) and cleanup.trigger.period.total_seconds() == 600
    # enabled: false means Task(enabled=False): listed, never fires on its own
    assert scheduler.tasks["billing_stats"].enabled is False


HOOK_PLUGIN = """
    import xtasks
    from xtasks.abc import Alerter

    CALLS = []

    async def ping():
        return "pong"

    class Collect(Alerter):
        def __init__(self, label="default"):
            self.label = label

        async def send(self, alert):
            CALLS.append(("alert", alert.kind.value))

    @xtasks.hookimpl
    def xtasks_add_tasks(register):
        register(xtasks.Task("hooked_ping", ping))
        register({"name": "hooked_seed", "function": ping, "async": True})

    @xtasks.hookimpl
    def xtasks_add_alerters(register):
        register("collect", Collect)

    @xtasks.hookimpl
    def xtasks_configure(scheduler):
        CALLS.append(("configure", sorted(scheduler.tasks)))

    @xtasks.hookimpl
    def xtasks_run_finished(record):
        CALLS.append(("finished", record.task, record.status.value))
"""


def test_hook_xtasks_add_tasks(dists: Distributions) -> None:
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    scheduler = Scheduler(plugins=["hooked"])
    assert {"hooked_ping", "hooked_seed"} <= set(scheduler.tasks)
    assert scheduler.task_origins["hooked_ping"].distribution == "hooked 1.0"


def test_hook_xtasks_add_alerters(dists: Distributions, tmp_path: Path) -> None:
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    app = tmp_path / "app.yaml"
    app.write_text("alerts:\n  - kind: collect\n    label: ops\n")
    scheduler = Scheduler(plugins=["hooked"], config=app)
    [collect] = [a for a in scheduler.alerters if type(a).__name__ == "Collect"]
    assert collect.label == "ops"  # type: ignore[attr-defined]


def test_hook_xtasks_configure(dists: Distributions) -> None:
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    Scheduler(plugins=["hooked"])
    calls = sys.modules["hooked_plugin"].CALLS
    assert ("configure", ["hooked_ping", "hooked_seed"]) in calls


STORE_PLUGIN = """
    import xtasks
    from xtasks.stores.memory import MemoryStore

    OPENED = []

    def open_fake(url):
        OPENED.append(url)
        return MemoryStore()

    @xtasks.hookimpl
    def xtasks_add_stores(register):
        register("fake", open_fake, example="fake://name")
"""


def test_hook_xtasks_add_stores(dists: Distributions) -> None:
    dists.install("xtasks-fake-store", "fake_store", STORE_PLUGIN)
    scheduler = Scheduler("fake://orders", plugins=["xtasks-fake-store"])
    assert sys.modules["fake_store"].OPENED == ["fake://orders"]
    assert type(scheduler.store).__name__ == "MemoryStore"
    with pytest.raises(
        xtasks.ConfigError, match=r"supported: memory://, sqlite:///path\.db[^(]* \("
    ):
        Scheduler("fake://orders", plugins=False)  # not installed: not known


def test_hook_xtasks_add_executors() -> None:
    from xtasks.abc import Executor

    class Echo(Executor):
        name = "echo"

        async def run(self, attempt: xtasks.Attempt) -> object:
            return attempt.args

    echo = Echo()

    class Adds:
        @xtasks.hookimpl
        def xtasks_add_executors(self, register):
            register(echo)

    class AddsToo:
        @xtasks.hookimpl
        def xtasks_add_executors(self, register):
            register(Echo())

    scheduler = Scheduler(plugins=[Adds()])
    assert scheduler.executors["echo"] is echo
    scheduler.add(Task("echoed", _noop, executor="echo"))
    with pytest.raises(xtasks.ConfigError, match="two executors are named 'echo'") as info:
        Scheduler(plugins=[Adds(), AddsToo()])
    assert "Adds@" in str(info.value) and "AddsToo@" in str(info.value)  # both origins


def test_a_store_scheme_registered_twice_names_both_distributions(dists: Distributions) -> None:
    dists.install("store-a", "store_a", STORE_PLUGIN)
    dists.install("store-b", "store_b", STORE_PLUGIN)
    with pytest.raises(PluginError) as info:
        Scheduler("fake://x", plugins=["store-a", "store-b"])
    message = str(info.value)
    assert "distribution store-b 1.0, entry point 'store_b = store_b'" in message
    assert "'fake://' is also registered by store-a 1.0 (store_a = store_a)" in message


@pytest.mark.anyio
async def test_hook_xtasks_run_finished(dists: Distributions) -> None:
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    scheduler = Scheduler(plugins=["hooked"])
    async with scheduler:
        rec = await (await scheduler.trigger("hooked_ping")).wait()
    assert rec.status is RunStatus.SUCCEEDED
    assert ("finished", "hooked_ping", "succeeded") in sys.modules["hooked_plugin"].CALLS


@pytest.mark.anyio
async def test_an_async_observer_is_awaited_and_its_errors_are_isolated(
    dists: Distributions,
) -> None:
    dists.install(
        "observer",
        "observer_plugin",
        """
        import anyio, xtasks
        SEEN = []
        DONE = anyio.Event()

        async def job():
            return 1

        @xtasks.hookimpl
        def xtasks_add_tasks(register):
            register(xtasks.Task("observed", job))

        @xtasks.hookimpl
        def xtasks_run_finished(record):
            async def later():
                SEEN.append(record.id)
                DONE.set()
                raise RuntimeError("observer bug")
            return later()
        """,
    )
    scheduler = Scheduler(plugins=["observer"])
    module = sys.modules["observer_plugin"]
    async with scheduler:
        first = await (await scheduler.trigger("observed")).wait()
        with anyio.fail_after(5):
            await module.DONE.wait()
        second = await (await scheduler.trigger("observed")).wait()  # still scheduling
    assert first.id in module.SEEN
    assert second.status is RunStatus.SUCCEEDED


def test_a_plugin_that_fails_to_import_names_distribution_and_entry_point(
    dists: Distributions,
) -> None:
    dists.install("broken-dist", "broken_plugin", "raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginError) as info:
        Scheduler(plugins=["broken-dist"])
    message = str(info.value)
    assert "broken-dist 1.0" in message
    assert "broken_plugin = broken_plugin" in message
    assert "ImportError: needs libfoo" in message
    causes = []
    error: BaseException | None = info.value
    while error is not None:
        causes.append(error)
        error = error.__cause__
    assert any(isinstance(c, ImportError) for c in causes)  # the original is chained


def test_strict_plugins_false_skips_the_broken_plugin_and_reports_it(
    dists: Distributions,
) -> None:
    dists.install("broken-dist", "broken_plugin", "raise ImportError('needs libfoo')\n")
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    scheduler = Scheduler(plugins=True, strict_plugins=False)
    assert "billing_cleanup" in scheduler.tasks
    assert [d.distribution for d in scheduler.degraded] == ["broken-dist 1.0"]
    assert any("needs libfoo" in str(p) for p in scheduler.problems)


def test_a_hook_returning_a_value_is_an_error_naming_the_hook(dists: Distributions) -> None:
    dists.install(
        "returns",
        "returns_plugin",
        """
        import xtasks
        @xtasks.hookimpl
        def xtasks_add_tasks(register):
            return [{"name": "x", "function": print}]
        """,
    )
    with pytest.raises(
        PluginError, match="hook xtasks_add_tasks.*returned list; it must return None"
    ):
        Scheduler(plugins=["returns"])


def test_registering_something_else_than_a_task_is_an_error(dists: Distributions) -> None:
    dists.install(
        "wrongtype",
        "wrongtype_plugin",
        """
        import xtasks
        @xtasks.hookimpl
        def xtasks_add_tasks(register):
            register("not a task")
        """,
    )
    with pytest.raises(
        PluginError, match="register\\(\\) takes an xtasks.Task or a seed-format dict, got str"
    ):
        Scheduler(plugins=["wrongtype"])


def test_a_task_name_contributed_twice_names_both_plugins(dists: Distributions) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    dists.install(
        "copycat",
        "copycat_plugin",
        """
        def stats():
            return 0
        PLUGIN_TASKS = [{"name": "billing_stats", "function": stats}]
        """,
    )
    with pytest.raises(PluginError) as info:
        Scheduler(plugins=True)
    message = str(info.value)
    assert "'billing_stats'" in message
    assert "distribution copycat 1.0, entry point 'copycat_plugin = copycat_plugin'" in message
    assert "plugin xcore-billing 1.0 (entry point 'xcore_billing = xcore_billing')" in message
    assert "Scheduler(plugins=[...])" in message and "XTASKS_PLUGINS" in message


def test_a_task_the_app_adds_that_a_plugin_has_names_the_plugin_and_the_way_out(
    dists: Distributions,
) -> None:
    dists.install("xcore-maint", "xcore_maint", MAINT_PLUGIN, entry_point="maint")
    scheduler = Scheduler()
    with pytest.raises(DuplicateTaskError) as info:
        scheduler.add(Task("nettoyage_cache", _noop))
    assert str(info.value) == (
        "a task named 'nettoyage_cache' is already registered by plugin xcore-maint 1.0 "
        "(entry point 'maint = xcore_maint'), and the application adds another; rename one "
        "of them, or leave the plugin out: Scheduler(plugins=[...]) loads only the plugins it "
        "names (plugins=False: none); from the environment, XTASKS_PLUGINS=name,... loads "
        "only those and XTASKS_DISABLE_PLUGIN_AUTOLOAD=1 none"
    )
    assert (info.value.existing, info.value.new) == (
        "plugin xcore-maint 1.0 (entry point 'maint = xcore_maint')",
        "the application",
    )
    # each way out it names works
    Scheduler(plugins=False).add(Task("nettoyage_cache", _noop))
    dists.monkeypatch.setenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD", "1")
    Scheduler().add(Task("nettoyage_cache", _noop))


def test_a_task_the_app_adds_twice_says_so(dists: Distributions) -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("export", _noop))
    with pytest.raises(DuplicateTaskError, match=r"^a task named 'export' is already registered;"):
        scheduler.add(Task("export", _noop))


def test_a_plugin_contributing_one_name_twice_is_an_error(dists: Distributions) -> None:
    dists.install(
        "twice",
        "twice_plugin",
        """
        def f():
            pass
        PLUGIN_TASKS = [{"name": "dup", "function": f}, {"name": "dup", "function": f}]
        """,
    )
    with pytest.raises(PluginError, match="distribution twice 1.0.*the task 'dup' twice"):
        Scheduler(plugins=["twice"])


MAINT_PLUGIN = """
    async def nettoyer():
        pass

    PLUGIN_TASKS = [
        {"name": "nettoyage_cache", "function": nettoyer, "interval_seconds": 3600},
        {"name": "purge", "function": nettoyer},
    ]
"""


def test_start_up_logs_each_plugin_and_config_file_with_counts(
    dists: Distributions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dists.install(
        "xcore-maint",
        "xcore_maint",
        MAINT_PLUGIN,
        entry_point="maint",
        config="tasks:\n  - name: purge\n    max_retries: 2\n",
    )
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    app = tmp_path / "app.yaml"
    app.write_text("tasks:\n  purge: {}\n  hooked_ping: {}\nalerts:\n  - kind: log\n")
    caplog.set_level(logging.INFO, logger="xtasks")
    Scheduler(plugins=["xcore-maint", "hooked"], config=app)
    lines = [r.getMessage() for r in caplog.records if r.name == "xtasks"]
    plugin_config = dists.site / "xcore_maint" / "config.yaml"
    assert lines == [
        "loaded plugin xcore-maint 1.0 (entry point 'maint = xcore_maint'): 2 task(s)",
        (
            "loaded plugin hooked 1.0 (entry point 'hooked_plugin = hooked_plugin'): "
            "2 task(s), alerter kinds collect"
        ),
        f"loaded config {plugin_config.resolve()}: 1 task(s) configured",
        f"loaded config {app}: 2 task(s) configured, 1 alert channel(s)",
    ]


def test_a_yaml_syntax_error_in_a_plugin_config_names_file_line_and_column(
    dists: Distributions,
) -> None:
    dists.install(
        "xcore-billing",
        "xcore_billing",
        SEED_PLUGIN,
        config="tasks:\n  billing_cleanup:\n    max_retries: [1\n",
    )
    with pytest.raises(ConfigFileError) as info:
        Scheduler(plugins=["xcore-billing"])
    assert str(info.value.path).endswith("xcore_billing/config.yaml")
    assert info.value.line is not None and info.value.column is not None
    assert f"config.yaml:{info.value.line}:{info.value.column}" in str(info.value)


@pytest.mark.anyio
async def test_an_unknown_task_in_the_app_config_stops_the_start(
    dists: Distributions, tmp_path: Path
) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    app = tmp_path / "app.yaml"
    app.write_text("tasks:\n  billing_cleanpu:\n    max_retries: 2\n")
    scheduler = Scheduler(plugins=["xcore-billing"], config=app)
    with pytest.raises(ConfigFileError, match="billing_cleanpu") as info:
        async with scheduler:
            pass
    assert "billing_cleanup" in str(info.value)  # did you mean
    assert info.value.line == 2


def test_autoload_can_be_switched_off_and_narrowed_from_the_environment(
    dists: Distributions,
) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    assert {"billing_cleanup", "hooked_ping"} <= set(Scheduler().tasks)
    dists.monkeypatch.setenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not Scheduler().tasks
    dists.monkeypatch.setenv("XTASKS_PLUGINS", "hooked")
    assert "hooked_ping" in Scheduler().tasks and "billing_cleanup" not in Scheduler().tasks
    dists.monkeypatch.delenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD")
    dists.monkeypatch.setenv(
        "XTASKS_PLUGINS", " xcore-billing , hooked "
    )  # distribution, entry point
    assert {"billing_cleanup", "hooked_ping"} <= set(Scheduler().tasks)


def test_a_name_in_xtasks_plugins_that_matches_no_plugin_is_an_error(
    dists: Distributions,
) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    dists.monkeypatch.setenv("XTASKS_PLUGINS", "xcore-billing,xcore-biling")
    with pytest.raises(
        PluginError, match=r"no installed plugin is named 'xcore-biling' \(in XTASKS_PLUGINS\)"
    ):
        Scheduler()
    lenient = Scheduler(strict_plugins=False)
    assert "billing_cleanup" in lenient.tasks and len(lenient.problems) == 1


def test_an_explicit_list_wins_over_the_environment(dists: Distributions) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)
    dists.install("hooked", "hooked_plugin", HOOK_PLUGIN)
    dists.monkeypatch.setenv("XTASKS_DISABLE_PLUGIN_AUTOLOAD", "1")
    dists.monkeypatch.setenv("XTASKS_PLUGINS", "hooked")
    assert set(Scheduler(plugins=["xcore-billing"]).tasks) == {"billing_cleanup", "billing_stats"}
    assert not Scheduler(plugins=False).tasks


def test_plugins_false_or_an_explicit_list_selects(dists: Distributions) -> None:
    dists.install("xcore-billing", "xcore_billing", SEED_PLUGIN)

    class Inline:
        @xtasks.hookimpl
        def xtasks_add_tasks(self, register):
            register(Task("inline_task", _noop))

    assert not Scheduler(plugins=False).tasks
    assert set(Scheduler(plugins=[Inline()]).tasks) == {"inline_task"}
    with pytest.raises(PluginError, match="no installed plugin is named 'nope'"):
        Scheduler(plugins=["nope"])


async def _noop() -> None:
    pass


def test_every_hook_is_documented_and_tested() -> None:
    hooks = [n for n in dir(xtasks.hookspecs) if n.startswith("xtasks_")]
    assert sorted(hooks) == [
        "xtasks_add_alerters",
        "xtasks_add_executors",
        "xtasks_add_stores",
        "xtasks_add_tasks",
        "xtasks_configure",
        "xtasks_run_finished",
    ]
    tests = set(globals())
    for name in hooks:
        spec = getattr(xtasks.hookspecs, name)
        doc = spec.__doc__ or ""
        for arg in spec.__code__.co_varnames[: spec.__code__.co_argcount]:
            assert f":param {arg}:" in doc, f"{name} does not document {arg}"
        assert "Must not block." in doc and ":return:" in doc
        assert f"test_hook_{name}" in tests, f"{name} has no test_hook_{name}"
        signature = f"{name}({', '.join(spec.__code__.co_varnames[: spec.__code__.co_argcount])})"
        assert f"`{signature}`" in README, f"README's hook table lacks `{signature}`"


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
