"""The real ``xtasks`` command, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _xtasks(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "xtasks", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_fires_tasks_and_stops_gracefully_on_signal(signum: signal.Signals) -> None:
    proc = _xtasks("run", "tests._cli_app:scheduler")
    try:
        assert proc.stdout is not None
        ticks = 0
        for line in proc.stdout:  # blocks until the task fires: no sleeping
            if line.strip() == "tick":
                ticks += 1
            if ticks == 2:
                break
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"received {signum.name}: stopping gracefully" in err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests._cli_app", "expected 'package.module:attribute'"),
        ("tests.no_such_module:scheduler", "cannot import 'tests.no_such_module'"),
        ("tests._cli_app:missing", "has no attribute 'missing'"),
        ("tests._cli_app:not_a_scheduler", "is a module, not an xtasks.Scheduler"),
    ],
)
def test_run_explains_a_bad_target(target: str, message: str) -> None:
    proc = _xtasks("run", target)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err


def test_version() -> None:
    proc = _xtasks("--version")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.startswith("xtasks ")
