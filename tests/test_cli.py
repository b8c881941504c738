"""The real ``xtasks`` command, in a subprocess, over real (throwaway) plugin distributions.

Each plugin is a package plus a ``<dist>-1.0.dist-info`` with ``entry_points.txt`` in a
temporary site directory on ``PYTHONPATH``: ``importlib.metadata`` finds it the way it
finds anything ``pip`` installed. ``XTASKS_PLUGINS`` names the test's plugins, so whatever
else is installed on the machine never leaks into the assertions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "xtasks-example-plugin"
APP = "tests._cli_app:scheduler"


@dataclass
class Site:
    """A directory on the subprocess's ``PYTHONPATH`` holding plugin distributions."""

    path: Path
    paths: tuple[Path, ...] = ()

    def install(self, dist: str, package: str, source: str, *, config: str | None = None) -> None:
        pkg = self.path / package
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(source))
        if config is not None:
            (pkg / "config.yaml").write_text(textwrap.dedent(config))
        self.dist_info(dist, "1.0", {package: package})

    def dist_info(self, dist: str, version: str, entry_points: dict[str, str]) -> None:
        info = self.path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[xtasks]\n{lines}")

    def env(self, plugins: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XTASKS_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [
                str(self.path),
                *map(str, self.paths),
                str(ROOT),  # the tests' own modules (--app tests._cli_app:scheduler)
                *filter(None, [os.environ.get("PYTHONPATH")]),
            ]
        )
        if plugins is None:
            env["XTASKS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        else:
            env["XTASKS_PLUGINS"] = plugins
        return env

    def start(self, *args: str, plugins: str | None = None, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "xtasks", *args],
            cwd=self.path,  # the default store (sqlite:///xtasks.db) lands here, not in the repo
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env(plugins), **env},
        )

    def xtasks(self, *args: str, plugins: str | None = None, **env: str) -> Result:
        proc = self.start(*args, plugins=plugins, **env)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        return Result(proc.returncode, out, err)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "site"
    path.mkdir()
    return Site(path)


BILLING = """
    async def nettoyer():
        print("billing_cleanup ran", flush=True)

    def stats():
        return 42

    PLUGIN_TASKS = [
        {"name": "billing_cleanup", "function": nettoyer, "interval_seconds": 3600,
         "async": True, "priority": "haute"},
        {"name": "billing_stats", "function": stats, "cron": "0 3 * * *",
         "depends_on": ["billing_cleanup"]},
        {"name": "billing_export", "function": stats},
    ]
"""


def _row(out: str, name: str) -> str:
    [row] = [line for line in out.splitlines() if line.startswith(name + " ")]
    return row


def test_list_shows_plugin_tasks_with_origin_trigger_next_fire_priority_and_deps(
    site: Site,
) -> None:
    site.install("xcore-billing", "xcore_billing", BILLING)
    result = site.xtasks("list", plugins="xcore-billing")
    assert result.code == 0, result.err
    header = result.out.splitlines()[0].split()
    assert header[:3] == ["NAME", "ORIGIN", "TRIGGER"] and "PRIORITY" in header
    cleanup = _row(result.out, "billing_cleanup")
    assert "xcore-billing 1.0" in cleanup and "every 1h" in cleanup and "high" in cleanup
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", cleanup)
    stats = _row(result.out, "billing_stats")
    assert "cron '0 3 * * *'" in stats and "T03:00:00+00:00" in stats
    assert stats.rstrip().endswith("billing_cleanup")
    assert "on demand" in _row(result.out, "billing_export")


def test_list_without_tasks_says_how_plugins_are_found(site: Site) -> None:
    result = site.xtasks("list")
    assert result.code == 0, result.err
    assert "no tasks" in result.out and "entry point in the group 'xtasks'" in result.out


def test_list_and_run_refuse_a_broken_plugin_with_a_clear_error(site: Site) -> None:
    site.install("broken-dist", "broken_plugin", "raise ImportError('needs libfoo')\n")
    for command in ("list", "run"):
        result = site.xtasks(command, plugins="broken-dist")
        assert result.code == 2
        assert "xtasks: error: plugin (distribution broken-dist 1.0" in result.err
        assert "ImportError: needs libfoo" in result.err


def test_config_option_and_environment_override_plugin_tasks(site: Site, tmp_path: Path) -> None:
    site.install("xcore-billing", "xcore_billing", BILLING)
    app = tmp_path / "app.yaml"
    app.write_text("tasks:\n  billing_cleanup:\n    interval_seconds: 600\n")
    for args, env in (((f"--config={app}",), {}), ((), {"XTASKS_CONFIG": str(app)})):
        result = site.xtasks("list", *args, plugins="xcore-billing", **env)
        assert result.code == 0, result.err
        assert "every 10m" in _row(result.out, "billing_cleanup")
    missing = site.xtasks("list", "--config", str(tmp_path / "nope.yaml"), plugins="xcore-billing")
    assert missing.code == 2 and "nope.yaml: no such file" in missing.err


def test_check_passes_a_good_plugin(site: Site) -> None:
    site.install("xcore-billing", "xcore_billing", BILLING)
    result = site.xtasks("check", plugins="xcore-billing")
    assert (result.code, result.out.strip()) == (0, "ok: 3 task(s) from 1 plugin(s)"), result.err


def test_check_names_file_line_and_key_of_a_bad_value_in_a_plugin_config(site: Site) -> None:
    config = "tasks:\n  billing_cleanup:\n    max_retries: lots\n"
    site.install("xcore-billing", "xcore_billing", BILLING, config=config)
    result = site.xtasks("check", plugins="xcore-billing")
    assert result.code == 1
    assert re.search(
        r"xcore_billing/config\.yaml:3:\d+: tasks\.billing_cleanup\.max_retries", result.out
    )
    assert "degraded" not in result.out  # a bad config file leaves no plugin out
    assert "1 problem(s)" in result.out


def test_check_names_file_line_and_column_of_a_yaml_syntax_error(site: Site) -> None:
    config = "tasks:\n  billing_cleanup:\n    max_retries: [1\n"
    site.install("xcore-billing", "xcore_billing", BILLING, config=config)
    result = site.xtasks("check", plugins="xcore-billing")
    assert result.code == 1
    assert re.search(r"xcore_billing/config\.yaml:\d+:\d+: ", result.out), result.out


def test_check_lists_every_problem_not_just_the_first(site: Site, tmp_path: Path) -> None:
    site.install("xcore-billing", "xcore_billing", BILLING)
    site.install("broken-dist", "broken_plugin", "raise ImportError('needs libfoo')\n")
    site.install(
        "typo-dist",
        "typo_plugin",
        "def f():\n    pass\nPLUGIN_TASKS = [{'name': 'typo_task', 'function': f, 'crom': '* * * * *'}]\n",
    )
    app = tmp_path / "app.yaml"
    app.write_text("tasks:\n  billing_cleanpu:\n    max_retries: 2\n")
    result = site.xtasks(
        "check", "--config", str(app), plugins="xcore-billing,broken-dist,typo-dist"
    )
    assert result.code == 1
    assert "problem 1/3" in result.out and "problem 3/3" in result.out
    assert "broken-dist 1.0" in result.out and "needs libfoo" in result.out
    assert "typo-dist 1.0" in result.out and "'crom'" in result.out
    assert "app.yaml:2" in result.out and "did you mean 'billing_cleanup'" in result.out
    assert "degraded: broken-dist 1.0 (broken_plugin = broken_plugin)" in result.out
    assert "degraded: typo-dist 1.0" in result.out
    assert "3 problem(s) would stop the scheduler; loaded: 3 task(s) from 1 plugin(s)" in result.out


TICKER = """
    async def plugin_tick():
        print("plugin tick", flush=True)

    PLUGIN_TASKS = [{"name": "plugin_tick", "function": plugin_tick, "interval_seconds": 0.2}]
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_fires_plugin_tasks_and_stops_gracefully_on_signal(
    site: Site, signum: signal.Signals
) -> None:
    site.install("ticker", "ticker_plugin", TICKER)
    _run_until_printed(site, ["run"], "plugin tick", signum, plugins="ticker")


def _run_until_printed(
    site: Site, args: list[str], line: str, signum: signal.Signals, plugins: str | None = None
) -> None:
    proc = site.start(*args, plugins=plugins)
    try:
        assert proc.stdout is not None
        seen = 0
        for out in proc.stdout:  # blocks until the task fires: no sleeping
            seen += out.strip() == line
            if seen == 2:
                break
        assert seen == 2, "the process ended before its task fired twice"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"received {signum.name}: stopping gracefully" in err
    assert re.search(r"INFO xtasks\.cli: run \S+ of '\w+' succeeded after 1 attempt", err), err


@pytest.mark.parametrize("args", [["run", "--app", APP], ["run", APP]])
def test_run_an_applications_own_scheduler(site: Site, args: list[str]) -> None:
    _run_until_printed(site, args, "tick", signal.SIGTERM)


def test_list_and_check_an_applications_own_scheduler(site: Site) -> None:
    listed = site.xtasks("list", "--app", APP)
    assert listed.code == 0, listed.err
    assert re.match(r"tick\s+app\s+every 0\.2s", _row(listed.out, "tick"))
    checked = site.xtasks("check", "--app", APP)
    assert (checked.code, checked.out.strip()) == (0, "ok: 1 task(s) from 0 plugin(s)")


@pytest.mark.parametrize("option", ["--store=memory://", "--config=app.yaml"])
def test_store_and_config_are_given_by_the_app(site: Site, option: str) -> None:
    result = site.xtasks("list", "--app", APP, option)
    assert result.code == 2
    assert f"xtasks: error: {option.split('=')[0]} is given by the app" in result.err


def test_an_unknown_store_is_a_usage_error(site: Site) -> None:
    for command in ("list", "check"):
        result = site.xtasks(command, "--store", "nosuch://x")
        assert result.code == 2 and "xtasks: error: field 'store': unknown store URL" in result.err


@pytest.mark.parametrize("command", ["run", "list", "check"])
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests._cli_app", "expected 'package.module:attribute'"),
        ("tests.no_such_module:scheduler", "cannot import 'tests.no_such_module'"),
        ("tests._cli_app:missing", "has no attribute 'missing'"),
        ("tests._cli_app:not_a_scheduler", "is a module, not an xtasks.Scheduler"),
    ],
)
def test_a_bad_app_target_is_explained(site: Site, command: str, target: str, message: str) -> None:
    result = site.xtasks(command, "--app", target)
    assert result.code == 2
    assert "xtasks: error: " in result.err and message in result.err


def test_the_example_plugin_shows_its_tasks_with_its_config_applied(site: Site) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site.dist_info(project["name"], project["version"], project["entry-points"]["xtasks"])
    site.paths = (EXAMPLE / "src",)
    origin = f"{project['name']} {project['version']}"
    result = site.xtasks("list", plugins=project["name"])
    assert result.code == 0, result.err
    assert "every 10s" in _row(result.out, "example_cleanup")  # config.yaml; tasks.py says 30
    assert origin in _row(result.out, "example_cleanup")
    assert "cron '* * * * *'" in _row(result.out, "example_stats")
    report = _row(result.out, "example_report")
    assert origin in report and "every 30s" in report and report.endswith("example_stats")
    checked = site.xtasks("check", plugins=project["name"])
    assert "on demand" in _row(result.out, "example_backup")
    assert "every 20s" in _row(result.out, "example_sync_partners")
    assert checked.out.strip() == "ok: 5 task(s) from 1 plugin(s)", checked.out + checked.err


def test_version(site: Site) -> None:
    result = site.xtasks("--version")
    assert result.code == 0 and result.out.startswith("xtasks ")


# --- xcore's documented format: the README's plugin, installed -----------------------------

README = (ROOT / "README.md").read_text()


def _readme_block(language: str, first_line: str) -> str:
    """The README's fenced ``language`` block that starts with ``first_line``."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.DOTALL | re.MULTILINE)
    [block] = [b for b in blocks if b.startswith(first_line)]
    return str(block)


def _install_readme_plugin(site: Site) -> Path:
    """The README's xcore plugin, verbatim: its entry point, tasks.py and config.yaml."""
    toml = tomllib.loads(_readme_block("toml", "[project.entry-points.xtasks]\nsync ="))
    package = site.path / "xcore_sync"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(_readme_block("python", "# xcore_sync/tasks.py"))
    config = package / "config.yaml"
    config.write_text(_readme_block("yaml", "# xcore_sync/config.yaml"))
    site.dist_info("xcore-sync", "1.0", toml["project"]["entry-points"]["xtasks"])
    return config


def test_the_readme_xcore_plugin_with_its_list_form_config_lists_and_checks(site: Site) -> None:
    config = _install_readme_plugin(site)
    assert "  - name: " in config.read_text()  # the list form, as xcore documents it
    listed = site.xtasks("list", plugins="xcore-sync")
    assert listed.code == 0, listed.err
    sync = _row(listed.out, "sync_donnees")
    assert "xcore-sync 1.0" in sync and "every 5m" in sync and "high" in sync
    assert _row(listed.out, "purge_journaux").endswith("sync_donnees")
    checked = site.xtasks("check", plugins="xcore-sync")
    assert (checked.code, checked.out.strip()) == (0, "ok: 2 task(s) from 1 plugin(s)")
    # the file's values are applied over PLUGIN_TASKS (max_retries 1 there)
    script = (
        "from xtasks import Scheduler\n"
        "t = Scheduler(plugins=['xcore-sync']).tasks['sync_donnees']\n"
        "print(t.max_retries, t.retry_delay, t.alert_on_failure, t.timeout)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script],
        env=site.env("xcore-sync"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert shown.stdout.split() == ["3", "60.0", "True", "120.0"]


def test_the_readme_xcore_plugin_runs_with_an_app_file_in_the_list_form_too(
    site: Site, tmp_path: Path
) -> None:
    config = _install_readme_plugin(site)
    app = tmp_path / "app.yaml"
    app.write_text('tasks:\n  - name: "sync_donnees"\n    interval_seconds: 0.2\n')
    proc = site.start("run", "--config", str(app), plugins="xcore-sync")
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # blocks until the task ran: no sleeping
            seen.append(line)
            if re.search(r"run \S+ of 'sync_donnees' succeeded after 1 attempt", line):
                break
        else:
            raise AssertionError("ended before sync_donnees ran:\n" + "".join(seen))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    log = "".join(seen)
    assert "loaded plugin xcore-sync 1.0 (entry point 'sync = xcore_sync.tasks'): 2 task(s)" in log
    assert f"loaded config {config.resolve()}: 1 task(s) configured" in log
    assert f"loaded config {app}: 1 task(s) configured" in log


@pytest.mark.parametrize(
    ("config", "where", "message", "refused_by"),
    [
        (
            "tasks:\n  - name: sync_donnees\n    max_retries: lots\n",
            r"xcore_sync/config\.yaml:3:18: tasks\.sync_donnees\.max_retries: ",
            "expected a whole number; got 'lots' (string)",
            ("list", "run"),
        ),
        (
            "tasks:\n  - name: sync_donnees\n  - name: purge_journaux\n  - name: sync_donnees\n",
            r"xcore_sync/config\.yaml:4:11: tasks\.2\.name: ",
            "duplicate task 'sync_donnees': the entry at line 2 names it too",
            ("list", "run"),
        ),
        (
            "tasks:\n  - name: sync_donnes\n",
            r"xcore_sync/config\.yaml:2:5: tasks\.sync_donnes: ",
            "did you mean 'sync_donnees'",
            ("run",),  # names are checked at start: `list` still lists
        ),
    ],
)
def test_a_bad_list_form_config_is_reported_at_its_line_by_every_command(
    site: Site, config: str, where: str, message: str, refused_by: tuple[str, ...]
) -> None:
    _install_readme_plugin(site).write_text(config)
    checked = site.xtasks("check", plugins="xcore-sync")
    assert checked.code == 1 and re.search(where, checked.out), checked.out
    assert message in checked.out
    for command in refused_by:
        refused = site.xtasks(command, plugins="xcore-sync")
        assert refused.code == 2 and re.search(where, refused.err), refused.err


# --- plugin selection ----------------------------------------------------------------------

NETTOYAGE = """
    async def nettoyer():
        pass

    PLUGIN_TASKS = [{"name": "nettoyage_cache", "function": nettoyer, "interval_seconds": 60}]
"""


def test_the_quickstart_runs_with_a_plugin_installed_that_has_one_of_its_task_names(
    site: Site, tmp_path: Path
) -> None:
    site.install("xcore-maint", "xcore_maint", NETTOYAGE)
    env = site.env(None)
    del env["XTASKS_DISABLE_PLUGIN_AUTOLOAD"]  # every installed plugin is discovered
    listed = subprocess.run(
        [sys.executable, "-m", "xtasks", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "xcore-maint 1.0" in _row(listed.stdout, "nettoyage_cache"), listed.stderr
    ran = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "export_rapport: succeeded -> 'rapport.pdf'" in ran.stdout


def test_demo_serves_only_the_example_plugins_tasks(site: Site) -> None:
    import httpx

    from tests.test_cli_serve import auth, serve

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site.dist_info(project["name"], project["version"], project["entry-points"]["xtasks"])
    site.paths = (EXAMPLE / "src",)
    site.install("xcore-maint", "xcore_maint", NETTOYAGE)
    served = serve(site, "demo", plugins=f"{project['name']},xcore-maint")
    try:
        token = served.wait_for(r"^token: (\S+)$")
        with httpx.Client(base_url=served.base, timeout=20) as client:
            tasks = client.get("/manager/tasks", headers=auth(token))
            names = {t["name"] for t in tasks.json()}
        code, err = served.stop()
    finally:
        served.proc.kill()
    assert code == 0, err
    assert names == {
        "example_backup",
        "example_cleanup",
        "example_report",
        "example_stats",
        "example_sync_partners",
    }
    assert "loaded plugin xtasks-example-plugin 0.1.0 (entry point " in err
    assert "xcore-maint" not in err
