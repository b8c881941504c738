"""Benchmarks: xtasks against raw asyncio, APScheduler 3.x and taskiq (``python -m bench``).

Each peer module exposes plain functions that run one measurement in a fresh event loop
and return the seconds it took (``time.perf_counter``); :mod:`bench.__main__` repeats them,
interleaved, and prints medians and ratios.
"""

from __future__ import annotations
