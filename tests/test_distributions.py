"""The distributions as users get them: built once, installed into fresh virtual environments.

``tools/build_dists.py`` (what ``nox -s build`` runs, with all its checks: wheel from sdist,
each wheel's files, entry points, ``twine check``) builds every sdist and wheel once per
session; each environment below is made with ``uv venv`` and gets only the wheels it names
(their third-party dependencies come from the index, through uv's cache). Every check runs
in a subprocess of that environment's Python, outside this repository.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from uv import find_uv_bin

from tests._lines import Lines
from tests.test_cli import EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tools" / "build_dists.py"
ADD_ONS = ("xtasks-fastapi", "xtasks-alerts", "xtasks-celery")
TIMEOUT = 300.0  # an install that downloads its dependencies the first time
SERVE_TIMEOUT = 30.0
TOKEN = "distributions-test-token-0123456789"

# The first test to run builds every distribution and an environment (uv's cache helps):
# more than the 60 s a test gets by default on a busy machine.
pytestmark = pytest.mark.timeout(TIMEOUT * 2)

#: What the core must never import by itself: the add-ons' libraries.
ADD_ON_LIBRARIES = ("fastapi", "starlette", "uvicorn", "aiosmtplib", "httpx", "celery", "kombu")


def _uv() -> str:
    """The uv of the ``build`` dependency group (tools/build_dists.py uses the same)."""
    return str(find_uv_bin())


class Venv:
    """A fresh virtual environment holding only what it was given, and ways to run in it."""

    def __init__(self, base: Path, installs: list[str]) -> None:
        self.path = base / "venv"
        self.python = self.path / "bin" / "python"
        self.cwd = base / "work"  # not this repository: nothing importable by accident
        self.cwd.mkdir()
        uv = _uv()
        subprocess.run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(self.path)],
            check=True,
            timeout=TIMEOUT,
            env=self.env(),
        )
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(self.python), *installs],
            check=True,
            timeout=TIMEOUT,
            env=self.env(),
        )

    def env(self, **more: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "XTASKS_CONFIG")
            and not k.startswith("XTASKS_PLUGINS")
            and k != "XTASKS_DISABLE_PLUGIN_AUTOLOAD"
        }
        return {**env, "PYTHONNOUSERSITE": "1", **more}

    def run(self, code: str, *args: str) -> dict[str, Any]:
        """Run ``code`` (with ``args`` in ``sys.argv``) here; the JSON it prints last."""
        done = subprocess.run(
            [str(self.python), "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result

    def xtasks(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / "xtasks"), *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.env(**env),
            timeout=60,
            check=False,
        )


# What a program sees of xtasks' distributions, as JSON: those installed, the add-on libraries
# imported once a Scheduler is built (from the YAML file in argv, if any), the entry points,
# the alerters built.
PROBE = """
    import importlib.metadata, importlib.util, json, sys
    import xtasks, xtasks.cli
    from xtasks import Scheduler

    scheduler = Scheduler(config=sys.argv[1] if sys.argv[1:] else None)  # plugins load
    print(json.dumps({
        "installed": sorted(
            d.metadata["Name"] for d in importlib.metadata.distributions()
            if d.metadata["Name"].startswith("xtasks")
        ),
        "imported": sorted(m for m in %r if m in sys.modules),
        "entry_points": sorted(
            f"{ep.dist.name}: {ep.name} = {ep.value}"
            for ep in importlib.metadata.entry_points(group="xtasks")
        ),
        "add_ons": sorted(
            p for p in ("xtasks_fastapi", "xtasks_alerts", "xtasks_celery")
            if importlib.util.find_spec(p)
        ),
        "alerters": sorted(type(a).__name__ for a in scheduler.alerters),
    }))
""".replace("%r", repr(ADD_ON_LIBRARIES))

ALERTS_YAML = """
alerts:
  - kind: email
    host: smtp.example.com
    port: 587
    sender: xtasks@example.com
    recipients: [ops@example.com]
  - kind: webhook
    url: https://hooks.example.com/xtasks
"""


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every distribution's wheel, built and checked once by tools/build_dists.py."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"tools/build_dists.py failed:\n{done.stdout}{done.stderr}"
    found = {w.name.split("-")[0].replace("_", "-"): w for w in out.glob("*.whl")}
    assert sorted(found) == sorted(["xtasks", *ADD_ONS])
    return found


def _venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path], *names: str) -> Venv:
    path = tmp_path_factory.mktemp("venv-" + "-".join(n.removeprefix("xtasks-") for n in names))
    return Venv(path, [str(wheels[n]) for n in names])


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    return _venv(tmp_path_factory, wheels, "xtasks")


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    return _venv(tmp_path_factory, wheels, "xtasks", "xtasks-alerts")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    """The core and xtasks-fastapi, with the example plugin ``xtasks demo`` shows."""
    venv = _venv(tmp_path_factory, wheels, "xtasks", "xtasks-fastapi")
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(venv.python), str(EXAMPLE)],
        check=True,
        timeout=TIMEOUT,
        env=venv.env(),
    )
    return venv


# --- the core alone ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_core_alone_imports_no_add_on_library_and_registers_no_alert_kind(
    core: Venv,
) -> None:
    seen = core.run(PROBE)
    assert seen["installed"] == ["xtasks"]
    assert seen["imported"] == []
    assert seen["entry_points"] == []
    assert seen["add_ons"] == []
    assert "EmailAlerter" not in seen["alerters"]


@pytest.mark.slow
def test_the_core_alone_names_xtasks_alerts_for_an_email_alert(core: Venv) -> None:
    (core.cwd / "app.yaml").write_text(ALERTS_YAML)
    checked = core.xtasks("check", "--config", "app.yaml")
    assert checked.returncode != 0
    assert "unknown alert kind 'email'" in checked.stdout + checked.stderr
    assert "pip install xtasks-alerts" in checked.stdout + checked.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_the_core_alone_names_xtasks_fastapi_when_the_web_part_is_missing(
    core: Venv, command: str, tmp_path: Path
) -> None:
    env = {}
    if command == "demo":  # the demo first needs its plugin: one beside the venv, on the path
        target = tmp_path / "example"
        subprocess.run(
            [_uv(), "pip", "install", "--quiet", "--python", str(core.python), "--no-deps"]
            + ["--target", str(target), str(EXAMPLE)],
            check=True,
            timeout=TIMEOUT,
            env=core.env(),
        )
        env["PYTHONPATH"] = str(target)
    done = core.xtasks(command, "--port", "0", **env)
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"xtasks: error: `xtasks {command}` needs"), message
    assert "the xtasks-fastapi distribution" in message
    assert "pip install xtasks-fastapi" in message
    assert "Traceback" not in done.stderr


# --- the core with one add-on -----------------------------------------------------------


@pytest.mark.slow
def test_xtasks_alerts_registers_email_and_webhook_through_its_entry_point(alerts: Venv) -> None:
    (alerts.cwd / "app.yaml").write_text(ALERTS_YAML)
    seen = alerts.run(PROBE, "app.yaml")
    assert seen["installed"] == ["xtasks", "xtasks-alerts"]
    assert seen["entry_points"] == ["xtasks-alerts: alerts = xtasks_alerts._plugin"]
    assert seen["add_ons"] == ["xtasks_alerts"]
    assert {"EmailAlerter", "WebhookAlerter"} <= set(seen["alerters"])
    assert not {"fastapi", "starlette", "uvicorn", "celery"} & set(seen["imported"])
    checked = alerts.xtasks("check", "--config", "app.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_xtasks_fastapi_registers_no_plugin_and_brings_no_alerts(web: Venv) -> None:
    seen = web.run(PROBE)
    assert seen["installed"] == ["xtasks", "xtasks-example-plugin", "xtasks-fastapi"]
    assert seen["entry_points"] == ["xtasks-example-plugin: example = xtasks_example.tasks"]
    assert seen["add_ons"] == ["xtasks_fastapi"]
    assert seen["imported"] == []  # the core still imports no web code by itself


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_xtasks_fastapi_gives_serve_and_demo_their_web_part(web: Venv, command: str) -> None:
    proc = subprocess.Popen(
        [str(web.path / "bin" / "xtasks"), command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=web.cwd,
        env=web.env(XTASKS_MANAGER_TOKEN=TOKEN),
    )
    try:
        assert proc.stdout is not None
        url = Lines(proc.stdout, SERVE_TIMEOUT).wait_for(r"^xtasks manager: (http://\S+)$")[1]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        health = httpx.get(f"{url}health", headers=headers, timeout=SERVE_TIMEOUT)
        assert health.status_code == 200, health.text
        page = httpx.get(url, headers=headers, timeout=SERVE_TIMEOUT)
        assert page.status_code == 200 and "<html" in page.text.lower()
        tasks = httpx.get(f"{url}tasks", headers=headers, timeout=SERVE_TIMEOUT).json()
        assert tasks, "the example plugin's tasks"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=SERVE_TIMEOUT)
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_xtasks_celery_brings_the_executor_and_celery(
    tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]
) -> None:
    venv = _venv(tmp_path_factory, wheels, "xtasks", "xtasks-celery")
    seen = venv.run(
        """
        import importlib.metadata, json, sys
        from celery import Celery
        from xtasks import Scheduler, Task
        from xtasks_celery import CeleryExecutor

        app = Celery("probe", broker="redis://127.0.0.1:6379/13", backend="redis://127.0.0.1:6379/13")
        scheduler = Scheduler(executors=[CeleryExecutor(app)])
        scheduler.add(Task("rapport", "myapp.tasks.rapport", executor="celery"))  # known to it
        print(json.dumps({
            "installed": sorted(
                d.metadata["Name"] for d in importlib.metadata.distributions()
                if d.metadata["Name"].startswith("xtasks")
            ),
            "task": scheduler.tasks["rapport"].executor,
            "web": sorted(m for m in ("fastapi", "httpx") if m in sys.modules),
        }))
        """
    )
    assert seen["installed"] == ["xtasks", "xtasks-celery"]
    assert seen["task"] == "celery"
    assert seen["web"] == []


# --- the repository's side --------------------------------------------------------------


def test_the_add_ons_share_one_build_hook() -> None:
    """Each add-on keeps a copy of the hook (an sdist must build alone): the copies match."""
    hooks = {d: (ROOT / "distributions" / d / "hatch_build.py").read_text() for d in ADD_ONS}
    assert len(set(hooks.values())) == 1, "distributions/*/hatch_build.py differ: copy one over"


def test_every_add_on_package_has_its_distribution() -> None:
    """src/xtasks_x ships in distributions/xtasks-x, the core's wheel takes src/xtasks only."""
    packages = {p.name for p in (ROOT / "src").glob("xtasks_*") if (p / "__init__.py").exists()}
    projects = {
        p.name.replace("-", "_")
        for p in (ROOT / "distributions").iterdir()
        if (p / "pyproject.toml").exists()
    }
    assert packages == projects == {n.replace("-", "_") for n in ADD_ONS}


def test_from_a_clone_the_missing_web_part_is_named_by_its_directory() -> None:
    """Run from this repository, ``xtasks serve`` without xtasks-fastapi names the add-on's
    directory to install (the fresh environments above check the index name)."""
    code = (
        "import sys\n"
        "sys.modules['xtasks_fastapi'] = None  # as if xtasks-fastapi were not installed\n"
        "from xtasks.cli import main\n"
        "sys.exit(main(['serve']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert f"pip install {ROOT / 'distributions' / 'xtasks-fastapi'}" in done.stderr


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_demo_command_installs_every_xtasks_distribution_from_this_clone(page: str) -> None:
    """The first of the two commands (``pip install ... && xtasks demo``) names a directory
    for every xtasks distribution it needs, so pip never looks one up on an index (where a
    project of the same name may be someone else's)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    [command] = [
        line for line in text.splitlines() if "pip install" in line and "xtasks demo" in line
    ]
    given = command.split("pip install", 1)[1].split("&&", 1)[0].split()
    provided: dict[str, Path] = {}
    needed: set[str] = set()
    for arg in given:
        path, _, extras = arg.strip("\"'").partition("[")
        project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
        provided[project["name"]] = ROOT / path
        wanted = list(project.get("dependencies", []))
        for extra in extras.rstrip("]").split(",") if extras else []:
            wanted += project["optional-dependencies"][extra]
        needed |= {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0] for r in wanted}
    assert {"xtasks", "xtasks-fastapi"} <= provided.keys()
    assert {n for n in needed if n.startswith("xtasks")} <= provided.keys(), command


def test_the_readme_install_lines_name_the_distributions() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in (
        "pip install xtasks",
        "pip install xtasks-fastapi",
        "pip install xtasks-alerts",
        "pip install xtasks-celery",
    ):
        assert re.search(rf"^{re.escape(line)}\b", readme, re.MULTILINE), line
