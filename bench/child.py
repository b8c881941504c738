"""One measurement in a fresh process: ``python -m bench.child KIND MODULE:FUNC JSON-KWARGS``.

Every measurement runs in its own interpreter, so no peer inherits another's heap, threads,
imported modules or warmed caches, and a memory figure is that peer's alone. The last line
on stdout is JSON: ``{"ok": {metric: value}}`` or ``{"error": "Type: message"}``.

Kinds:

- ``throughput``: ``func(n, **options) -> seconds``; run once on a few jobs (imports, first-use caches,
  thread start-up), then measured on ``n`` jobs with the peak RSS growth over that call.
- ``lateness``: ``func(**kwargs) -> Lateness``, its :meth:`~bench.jobs.Lateness.metrics`.
- ``metrics``: ``func(**kwargs) -> dict[str, float]``, as is.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import resource
import sys
import warnings
from typing import Any

__all__ = ["WARMUP_JOBS", "peak_rss", "rss_now"]

#: Jobs run once before a throughput measurement: imports, first-use caches, thread start-up.
WARMUP_JOBS = 500


def rss_now() -> int:
    """Resident set size now, in bytes (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak() -> None:
    """Reset the peak RSS to the current RSS (Linux >= 4.0), so the warm-up's does not count."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass  # then the peak since start-up is used: larger than the workload's, if anything


def _throughput(func: Any, n: int, options: dict[str, Any]) -> dict[str, float]:
    """``options``: the other keyword arguments of ``func`` (``threads``, say)."""
    func(min(n, WARMUP_JOBS), **options)
    gc.collect()
    _reset_peak()
    before = rss_now()
    seconds = float(func(n, **options))
    return {"seconds": seconds, "rate": n / seconds, "rss_growth": peak_rss() - before}


def main(argv: list[str]) -> int:
    kind, target, raw = argv
    logging.disable(logging.CRITICAL)  # every peer logs per job at INFO/DEBUG: silence all
    warnings.simplefilter("ignore")
    module_name, _, func_name = target.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        kwargs: dict[str, Any] = json.loads(raw)
        if kind == "throughput":
            result = _throughput(func, int(kwargs.pop("n")), kwargs)
        elif kind == "lateness":
            result = func(**kwargs).metrics()
        elif kind == "metrics":
            result = {key: float(value) for key, value in func(**kwargs).items()}
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
