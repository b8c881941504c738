"""``xtasks serve`` and ``xtasks demo`` in real subprocesses, over real HTTP.

The URL line is read from the process's stdout (with a timeout, in a thread); every
other wait is on a condition (an HTTP answer, a stream's end), never a sleep.
"""

from __future__ import annotations

import re
import signal
import time
import tomllib
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from tests._lines import Lines
from tests.test_cli import EXAMPLE, Site
from xtasks.stores import open_store

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

TOKEN = "serve-test-token-0123456789abcdef"
TIMEOUT = 20.0

SLOW = """
    import anyio

    async def slow():
        await anyio.sleep(0.5)
        return "slow done"

    async def quick():
        return 7

    PLUGIN_TASKS = [
        {"name": "slow", "function": slow, "async": True},
        {"name": "quick", "function": quick, "async": True},
    ]
"""


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "site"
    path.mkdir()
    return Site(path)


class Served:
    """A running ``xtasks serve|demo``: its URL, printed token and output so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self._lines = Lines(proc.stdout, TIMEOUT)
        self.url = self.wait_for(r"^xtasks manager: (http://\S+)$")
        self.token = ""

    @property
    def out(self) -> list[str]:
        return self._lines.seen

    def wait_for(self, pattern: str) -> str:
        """The first group of the next stdout line ``pattern`` matches."""
        match = self._lines.wait_for(
            pattern, ended=lambda: self.proc.communicate(timeout=TIMEOUT)[1]
        )
        return match.group(1)

    @property
    def base(self) -> str:
        return self.url.removesuffix("/manager/")

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, err


def serve(site: Site, *args: str, plugins: str | None = None, **env: str) -> Served:
    return Served(site.start(*args, "--port", "0", plugins=plugins, **env))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_final(client: httpx.Client, run_id: str, token: str) -> dict[str, object]:
    """Poll one run until it is final (each poll is an HTTP round trip, not a sleep)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/manager/runs/{run_id}", headers=auth(token)).json()
        if body["status"] in ("succeeded", "failed", "cancelled", "skipped"):
            return body
    raise AssertionError(f"run {run_id} did not finish")


def stored_run(db: Path, run_id: str) -> object:
    async def read() -> object:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            return await store.get_run(run_id)
        finally:
            await store.close()

    return anyio.run(read)


def test_serve_with_an_env_token_serves_the_manager_and_stops_on_sigterm(
    site: Site, tmp_path: Path
) -> None:
    site.install("slowpoke", "slowpoke_plugin", SLOW)
    db = tmp_path / "serve.db"
    served = serve(
        site, "serve", "--store", f"sqlite:///{db}", plugins="slowpoke", XTASKS_MANAGER_TOKEN=TOKEN
    )
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/manager/", served.url)
        assert served.wait_for(r"^token: (.*)$") == "from $XTASKS_MANAGER_TOKEN"
        with httpx.Client(base_url=served.base, timeout=TIMEOUT) as client:
            health = client.get("/manager/health", headers=auth(TOKEN))
            assert health.status_code == 200 and health.json()["running"] is True
            assert client.get("/manager/health").status_code == 401
            assert client.get("/manager/health", headers=auth("wrong")).status_code == 401
            root = client.get("/")
            assert root.status_code == 307 and root.headers["location"] == "/manager/"
            tasks = client.get("/manager/tasks", headers=auth(TOKEN)).json()
            assert sorted(t["name"] for t in tasks) == ["quick", "slow"]
            quick = client.post("/manager/tasks/quick/run", headers=auth(TOKEN)).json()["run_id"]
            assert wait_final(client, quick, TOKEN)["status"] == "succeeded"
            slow = client.post("/manager/tasks/slow/run", headers=auth(TOKEN)).json()["run_id"]
            status = ""
            deadline = time.monotonic() + TIMEOUT
            while status != "running" and time.monotonic() < deadline:
                status = client.get(f"/manager/runs/{slow}", headers=auth(TOKEN)).json()["status"]
            assert status == "running"
        code, err = served.stop(signal.SIGTERM)  # while `slow` runs: it is waited for
    finally:
        served.proc.kill()
    assert code == 0, err
    assert "received SIGTERM: stopping gracefully" in err
    assert TOKEN not in err and TOKEN not in "\n".join(served.out)
    assert getattr(stored_run(db, quick), "status", None) == "succeeded"
    slow_record = stored_run(db, slow)
    assert getattr(slow_record, "status", None) == "succeeded", slow_record


def test_serve_generates_a_token_prints_it_once_and_never_logs_it(site: Site) -> None:
    served = serve(site, "serve", "--store", "memory://")
    try:
        token = served.wait_for(r"^token: (\S+)$")
        assert len(token) >= 40
        with httpx.Client(base_url=served.base, timeout=TIMEOUT) as client:
            assert client.get("/manager/health", headers=auth(token)).status_code == 200
            assert client.get("/manager/tasks", headers=auth(token)).json() == []
            assert client.get("/manager/health").status_code == 401
        code, err = served.stop(signal.SIGINT)
    finally:
        served.proc.kill()
    assert code == 0, err
    assert sum(token in line for line in served.out) == 1
    assert token not in err


def test_serve_read_tokens_from_the_environment_may_only_read(site: Site) -> None:
    served = serve(
        site,
        "serve",
        "--app",
        "tests._cli_app:scheduler",
        XTASKS_MANAGER_TOKEN=TOKEN,
        XTASKS_MANAGER_READ_TOKENS="reader-one-123456, reader-two-654321",
    )
    try:
        with httpx.Client(base_url=served.base, timeout=TIMEOUT) as client:
            for reader in ("reader-one-123456", "reader-two-654321"):
                assert client.get("/manager/tasks", headers=auth(reader)).status_code == 200
                run = client.post("/manager/tasks/tick/run", headers=auth(reader))
                assert run.status_code == 403
            assert client.post("/manager/tasks/tick/run", headers=auth(TOKEN)).status_code == 202
        code, err = served.stop()
    finally:
        served.proc.kill()
    assert code == 0, err


def test_sigterm_with_an_open_event_stream_stops_promptly(site: Site) -> None:
    served = serve(site, "serve", "--store", "memory://", XTASKS_MANAGER_TOKEN=TOKEN)
    try:
        with (
            httpx.Client(base_url=served.base, timeout=TIMEOUT) as client,
            client.stream("GET", "/manager/events", headers=auth(TOKEN)) as stream,
        ):
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            started = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            rest = list(lines)  # the server ends the stream: iteration stops
            ended = time.monotonic() - started
        _, err = served.proc.communicate(timeout=TIMEOUT)
        stopped = time.monotonic() - started
    finally:
        served.proc.kill()
    assert served.proc.returncode == 0, err
    assert all(not line or line.startswith(":") for line in rest), rest
    # uvicorn says so when an open stream holds it until its graceful timeout (10 s).
    assert "graceful shutdown exceeded" not in err, f"a stream held the shutdown {ended:.1f}s"
    assert stopped < TIMEOUT, f"the server took {stopped:.1f}s to stop"
    assert "Application shutdown complete" in err


def test_serve_refuses_a_public_host_without_a_token_from_the_environment(site: Site) -> None:
    result = site.xtasks("serve", "--host", "0.0.0.0", "--store", "memory://")
    assert result.code == 2
    assert "--host 0.0.0.0 is not a loopback address: set XTASKS_MANAGER_TOKEN" in result.err
    assert result.out == ""


def test_serve_reports_a_port_in_use(site: Site) -> None:
    served = serve(site, "serve", "--store", "memory://", XTASKS_MANAGER_TOKEN=TOKEN)
    try:
        port = served.url.split(":")[2].split("/")[0]
        other = site.xtasks(
            "serve", "--store", "memory://", "--port", port, XTASKS_MANAGER_TOKEN=TOKEN
        )
        assert other.code != 0 and "address already in use" in other.err.lower(), other.err
        assert "xtasks manager:" not in other.out
        code, err = served.stop()
    finally:
        served.proc.kill()
    assert code == 0, err


def test_demo_without_the_example_plugin_says_how_to_install_it(site: Site) -> None:
    result = site.xtasks("demo", "--port", "0")
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert line.endswith(f"pip install {EXAMPLE}"), line


def test_demo_serves_the_example_plugins_tasks_on_the_demo_store(site: Site) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site.dist_info(project["name"], project["version"], project["entry-points"]["xtasks"])
    site.paths = (EXAMPLE / "src",)
    served = serve(site, "demo", plugins=project["name"])
    try:
        token = served.wait_for(r"^token: (\S+)$")
        assert served.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=served.base, timeout=TIMEOUT) as client:
            tasks = client.get("/manager/tasks", headers=auth(token))
            assert tasks.status_code == 200
            names = {t["name"] for t in tasks.json()}
            assert {"example_cleanup", "example_stats", "example_report"} <= names
            run = client.post("/manager/tasks/example_cleanup/run", headers=auth(token))
            assert wait_final(client, run.json()["run_id"], token)["status"] == "succeeded"
        code, err = served.stop()
    finally:
        served.proc.kill()
    assert code == 0, err
    assert (site.path / "xtasks-demo.db").is_file()
