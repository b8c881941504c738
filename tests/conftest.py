from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

#: CI: a failure prints the blob that replays it (``@reproduce_failure``), no example
#: database to carry between runs, no per-example deadline on a shared runner. The number of
#: examples is each test's own, so the suite takes as long as it does locally.
settings.register_profile(
    "ci",
    print_blob=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")  # ``--hypothesis-profile`` still overrides it


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both backends: the core is anyio-only."""
    return str(request.param)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: no backend may silently go untested."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        names = ", ".join(sorted({getattr(r, "nodeid", "?") for r in skipped}))
        if reporter is not None:
            reporter.write_line(f"CI: {len(skipped)} test(s) skipped, which CI forbids: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
