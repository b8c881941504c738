"""Start-up: ``import xtasks``, then a ``Scheduler()`` discovering 50 installed plugins.

The plugins are real distributions as far as ``importlib.metadata`` can tell (a package and
a ``.dist-info`` with an ``xtasks`` entry point each), written once into a folder that the
measuring process puts on ``sys.path``: discovery reads them as it would from
site-packages. Each measurement runs in a fresh process (see :mod:`bench.child`).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

__all__ = ["import_and_discover", "import_only", "make_plugins"]


def make_plugins(count: int) -> str:
    """Write ``count`` plugin distributions into a new folder; return its path."""
    root = Path(tempfile.mkdtemp(prefix="xtasks-bench-plugins-"))
    for i in range(count):
        package = root / f"bench_plugin_{i:02d}"
        package.mkdir()
        (package / "__init__.py").write_text(
            "async def job() -> None:\n"
            "    pass\n\n"
            "PLUGIN_TASKS = [\n"
            f"    {{'name': 'bench_plugin_{i:02d}_task', 'function': job,"
            " 'interval_seconds': 3600, 'async': True},\n"
            "]\n",
            encoding="utf-8",
        )
        info = root / f"bench_plugin_{i:02d}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: bench-plugin-{i:02d}\nVersion: 1.0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            f"[xtasks]\nbench_{i:02d} = bench_plugin_{i:02d}\n", encoding="utf-8"
        )
    return str(root)


def import_only() -> dict[str, float]:
    """Seconds to ``import xtasks`` in a fresh interpreter."""
    began = time.perf_counter()
    import xtasks  # noqa: F401 - what is measured

    return {"seconds": time.perf_counter() - began}


def import_and_discover(plugins: str) -> dict[str, float]:
    """Seconds to ``import xtasks`` and build a ``Scheduler()`` that discovers the plugins
    in ``plugins`` (and whatever else is installed)."""
    sys.path.insert(0, plugins)
    began = time.perf_counter()
    import xtasks

    scheduler = xtasks.Scheduler()
    seconds = time.perf_counter() - began
    found = sum(name.startswith("bench_plugin_") for name in scheduler.tasks)
    return {"seconds": seconds, "tasks": float(found)}
