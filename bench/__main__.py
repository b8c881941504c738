"""``python -m bench``: xtasks against raw asyncio, APScheduler 3 and 4 and taskiq, in one run.

Sections: 1. tiny async jobs (memory store and SQLite with history; runs/s and peak RSS
growth), 2. tiny sync jobs, 3. start lateness of a 0.2 s periodic task, 4. idle cost of
100,000 hourly tasks (phase by phase), 5. 1,000 schedules every second (lateness and CPU
against ``loop.call_at``), 6. 100,000 interval schedules (registration time, bytes per
schedule, idle CPU against ``loop.call_at``), 7. start-up with 50 plugins, 8. a fleet of
replica processes on one SQLite file, PostgreSQL and Redis (those reachable: runs/s,
duplicates; ``bench.fleet``), 9. the Celery executor against ``send_task`` +
``AsyncResult.get`` on one worker (``bench.celery_bench``). Every measurement but
sections 4 and 9 runs in a
fresh process (``bench.child``); repeats are interleaved across peers, and tables show
medians and ratios to the raw limit measured in the same run. APScheduler 4 (a pre-release
whose import name clashes with 3.x) runs in a venv of its own, made once on first use in
``bench/.venv-apscheduler4`` (with ``uv`` if found, else ``venv`` + ``pip``); if it cannot
be made (no network), its rows say why. ``--markdown`` adds a summary table, ``--json
PATH`` writes every sample and median with the machine's details. ``--quick`` for a run
of sections 1 to 7 under two minutes, ``--profile`` for a cProfile of the xtasks submit path instead.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import startup

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: Seconds one child process may take before it counts as hung.
CHILD_TIMEOUT = 900.0
_ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
#: What the APScheduler 4 venv holds (``bench.child`` and ``bench.jobs`` need only the
#: standard library), where it is, and the seconds its creation may take.
APSCHEDULER4 = "apscheduler==4.0.0a6"
APSCHEDULER4_VENV = _ROOT / "bench" / ".venv-apscheduler4"
VENV_TIMEOUT = 600.0
#: Section 1's N for APScheduler 4 when a larger one is asked: a few thousand jobs/s, fewer
#: as its queue grows (100,000 would take minutes per sample on a loaded machine).
APSCHEDULER4_MAX_ASYNC = 10_000


@dataclass
class Peer:
    """One row of a table: a function run in a fresh process per sample.

    ``kind`` and ``target`` are :mod:`bench.child`'s (``throughput``: ``func(n)`` returns
    seconds; ``lateness``/``metrics``: ``func(**kwargs)``); ``python`` runs the child
    (default: this interpreter).
    """

    key: str
    name: str
    target: str
    kind: str = "throughput"
    kwargs: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    python: str = sys.executable

    def run(self) -> None:
        if self.error is not None:
            return
        command = [self.python, "-m", "bench.child", self.kind, self.target]
        command.append(json.dumps(self.kwargs))
        try:
            done = subprocess.run(
                command,
                check=False,  # a failing child reports its error as JSON
                cwd=_ROOT,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            self.error = f"no result within {CHILD_TIMEOUT:g} s"
            return
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            self.error = f"exit {done.returncode}: {tail[0]}"
            return
        if "error" in answer:
            self.error = answer["error"]
        else:
            self.samples.append(answer["ok"])

    def median(self, metric: str) -> float | None:
        values = [sample[metric] for sample in self.samples if metric in sample]
        return statistics.median(values) if values else None

    def report(self) -> dict[str, Any]:
        """For ``--json``: the label, every sample, the medians and the error, if any."""
        metrics = sorted({metric for sample in self.samples for metric in sample})
        return {
            "label": self.name,
            "medians": {metric: self.median(metric) for metric in metrics},
            "samples": self.samples,
            "error": self.error,
        }


def _run_step(command: list[str]) -> str | None:
    """Run one step of the venv's creation; why it failed, or ``None``."""
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=VENV_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode == 0:
        return None
    lines = (done.stderr + done.stdout).strip().splitlines() or ["no output"]
    last = " ".join(lines[-1].split())
    return f"`{Path(command[0]).name} {command[1]}` exit {done.returncode}: {last}"


@cache
def _apscheduler4_python() -> tuple[str | None, str | None]:
    """The interpreter of the APScheduler 4 venv, made on first use; or why there is none.

    A marker file naming :data:`APSCHEDULER4` is written last: a venv without it (an
    interrupted or older creation) is made again.
    """
    python = APSCHEDULER4_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    marker = APSCHEDULER4_VENV / "bench-installed.txt"
    if python.exists() and marker.exists() and marker.read_text("utf-8") == APSCHEDULER4:
        return str(python), None
    where = APSCHEDULER4_VENV.relative_to(_ROOT)
    print(f"APScheduler 4: making its venv {where} with {APSCHEDULER4} (once) ...", flush=True)
    started = time.perf_counter()
    shutil.rmtree(APSCHEDULER4_VENV, ignore_errors=True)
    uv = shutil.which("uv")
    steps = (
        [
            [uv, "venv", "-q", "-p", sys.executable, str(APSCHEDULER4_VENV)],
            [uv, "pip", "install", "-q", "-p", str(python), APSCHEDULER4],
        ]
        if uv
        else [
            [sys.executable, "-m", "venv", str(APSCHEDULER4_VENV)],
            [str(python), "-m", "pip", "install", "-q", APSCHEDULER4],
        ]
    )
    for step in steps:
        if (reason := _run_step(step)) is not None:
            print(f"APScheduler 4: not installed: {reason}")
            return None, reason
    marker.write_text(APSCHEDULER4, "utf-8")
    print(f"APScheduler 4: venv made in {time.perf_counter() - started:.1f} s")
    return str(python), None


def _apscheduler4(key: str, name: str, target: str, kind: str, kwargs: dict[str, Any]) -> Peer:
    """A peer run by the APScheduler 4 venv's interpreter; failed already if there is none."""
    python, reason = _apscheduler4_python()
    if python is None:
        return Peer(key, name, target, kind, kwargs, error=f"not installed: {reason}")
    return Peer(key, name, target, kind, kwargs, python=python)


def _repeat(peers: Sequence[Peer], repeat: int) -> None:
    for _ in range(repeat):
        for peer in peers:  # interleaved, so drift of the machine hits every peer alike
            peer.run()


def _ratio(value: float | None, limit: float | None) -> float | None:
    return value / limit if value is not None and limit else None


def _async_peers(n: int) -> list[Peer]:
    kw = {"n": n}
    return [
        Peer(
            "asyncio", "asyncio TaskGroup (floor)", "bench.asyncio_raw:async_taskgroup", kwargs=kw
        ),
        Peer("gather", "asyncio.gather", "bench.asyncio_raw:async_gather", kwargs=kw),
        Peer("xtasks", "xtasks submit, memory store", "bench.xtasks_bench:submit_async", kwargs=kw),
        Peer(
            "xtasks_sqlite",
            "xtasks submit, SQLite (history kept)",
            "bench.xtasks_bench:submit_sqlite",
            kwargs=kw,
        ),
        Peer(
            "xtasks_trigger",
            "xtasks trigger (overlap=allow)",
            "bench.xtasks_bench:trigger_async",
            kwargs=kw,
        ),
        Peer(
            "apscheduler3",
            "APScheduler 3 add_job (run now)",
            "bench.apscheduler_bench:add_job_async",
            kwargs=kw,
        ),
        _apscheduler4(
            "apscheduler4",
            f"APScheduler 4.0a6 add_job{_aps4_async_note(n)}",
            "bench.apscheduler4_bench:add_job_async",
            "throughput",
            {"n": min(n, APSCHEDULER4_MAX_ASYNC)},
        ),
        Peer("taskiq", "taskiq InMemoryBroker kiq", "bench.taskiq_bench:kiq_async", kwargs=kw),
    ]


def _aps4_async_note(n: int) -> str:
    """Says when section 1 runs APScheduler 4 on fewer jobs than the other peers."""
    return f" (N={APSCHEDULER4_MAX_ASYNC:,} only)" if n > APSCHEDULER4_MAX_ASYNC else ""


def _sync_peers(n: int, threads: int) -> list[Peer]:
    loop_pool = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size
    kw = {"n": n, "threads": threads}
    return [
        Peer(
            "run_in_executor",
            f"loop.run_in_executor, pool {threads} (floor)",
            "bench.asyncio_raw:sync_run_in_executor",
            kwargs=kw,
        ),
        Peer(
            "anyio_to_thread",
            f"anyio.to_thread, limiter {threads}",
            "bench.asyncio_raw:sync_anyio_to_thread",
            kwargs=kw,
        ),
        Peer(
            "xtasks",
            f"xtasks submit, thread_slots={threads}",
            "bench.xtasks_bench:submit_sync",
            kwargs=kw,
        ),
        Peer(
            "apscheduler3",
            f"APScheduler 3 add_job, default exec ({loop_pool} thr)",
            "bench.apscheduler_bench:add_job_sync",
            kwargs={"n": n},
        ),
        _apscheduler4(
            "apscheduler4",
            f"APScheduler 4.0a6 add_job, thread executor {threads}",
            "bench.apscheduler4_bench:add_job_sync",
            "throughput",
            kw,
        ),
        Peer(
            "taskiq",
            f"taskiq InMemoryBroker kiq, pool {threads}",
            "bench.taskiq_bench:kiq_sync",
            kwargs=kw,
        ),
    ]


def _throughput(title: str, peers: list[Peer], n: int, repeat: int) -> None:
    _repeat(peers, repeat)
    print(f"\n== {title}: N={n:,}, {repeat} fresh processes each, jobs/s (median, min, max) ==")
    floor = peers[0].median("rate")
    head = (
        f"{'peer':<46} {'median':>9} {'min':>9} {'max':>9} {'us/job':>8} {'ratio':>7} "
        f"{'x time':>7} {'peak RSS':>9}"
    )
    print(head)
    print("-" * len(head))
    for peer in peers:
        median = peer.median("rate")
        growth = peer.median("rss_growth")
        if median is None or growth is None:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        rates = [sample["rate"] for sample in peer.samples]
        ratio = f"{median / floor:6.3f}" if floor else "   n/a"
        slower = f"{floor / median:6.1f}x" if floor else "    n/a"
        print(
            f"{peer.name:<46} {median:>9,.0f} {min(rates):>9,.0f} {max(rates):>9,.0f} "
            f"{1e6 / median:>8.1f} {ratio:>7} {slower:>7} {growth / MiB:>+7.0f} MiB"
        )
        if peer.error:
            print(f"{'':<46} (a later repeat FAILED: {peer.error})")
    print(
        "ratio = median jobs/s / floor's median; x time = how many times the floor's time; "
        "peak RSS = growth of the peak resident set over the N jobs"
    )


def _precision(interval: float, duration: float) -> list[Peer]:
    kw = {"interval": interval, "duration": duration}
    peers = [
        Peer(
            "xtasks",
            f"xtasks Every(seconds={interval:g})",
            "bench.xtasks_bench:precision",
            "lateness",
            kw,
        ),
        Peer(
            "apscheduler3",
            f"APScheduler 3 IntervalTrigger({interval:g} s)",
            "bench.apscheduler_bench:precision",
            "lateness",
            kw,
        ),
    ]
    _repeat(peers, 1)
    print(f"\n== 3. start lateness of a {interval:g} s periodic task over {duration:g} s ==")
    print("lateness = wall clock when the job is called - its due time")
    head = f"{'peer':<46} {'fires':>6} {'median ms':>10} {'p90 ms':>8} {'worst ms':>9}"
    print(head)
    print("-" * len(head))
    for peer in peers:
        if not peer.samples:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        result = peer.samples[0]
        print(
            f"{peer.name:<46} {result['fires']:>6.0f} {result['median'] * 1e3:>10.2f} "
            f"{result['p90'] * 1e3:>8.2f} {result['worst'] * 1e3:>9.2f}"
        )
    return peers


def _every_second(count: int, duration: float, repeat: int) -> list[Peer]:
    kw = {"count": count, "duration": duration}
    peers = [
        Peer(
            "call_at",
            "loop.call_at, re-armed (limit)",
            "bench.asyncio_raw:call_at_every_second",
            "metrics",
            kw,
        ),
        Peer(
            "xtasks",
            "xtasks Every(seconds=1), memory store",
            "bench.xtasks_bench:every_second",
            "metrics",
            kw,
        ),
        Peer(
            "apscheduler3",
            "APScheduler 3 IntervalTrigger(seconds=1)",
            "bench.apscheduler_bench:every_second",
            "metrics",
            kw,
        ),
        _apscheduler4(
            "apscheduler4",
            "APScheduler 4.0a6 IntervalTrigger(seconds=1)",
            "bench.apscheduler4_bench:every_second",
            "metrics",
            kw,
        ),
    ]
    _repeat(peers, repeat)
    print(
        f"\n== 5. {count:,} schedules every 1 s for {duration:g} s "
        f"(one due every {1e3 / count:g} ms), {repeat} fresh processes each, medians =="
    )
    print("lateness = clock when the job is called - its due time; CPU = process CPU time")
    limit = peers[0]
    head = (
        f"{'peer':<46} {'p50 ms':>7} {'p99 ms':>7} {'worst ms':>9} {'CPU s':>7} "
        f"{'p99 ratio':>9} {'CPU ratio':>9}"
    )
    print(head)
    print("-" * len(head))
    for peer in peers:
        p50, p99, worst, cpu = (peer.median(m) for m in ("p50", "p99", "worst", "cpu"))
        if p50 is None or p99 is None or worst is None or cpu is None:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        p99_ratio = _ratio(p99, limit.median("p99"))
        cpu_ratio = _ratio(cpu, limit.median("cpu"))
        print(
            f"{peer.name:<46} {p50 * 1e3:>7.2f} {p99 * 1e3:>7.2f} {worst * 1e3:>9.2f} "
            f"{cpu:>7.2f} {_x(p99_ratio):>9} {_x(cpu_ratio):>9}"
        )
    return peers


def _register(count: int, idle_seconds: float, repeat: int) -> list[Peer]:
    kw = {"count": count, "idle_seconds": idle_seconds}
    peers = [
        Peer(
            "call_at",
            "loop.call_at, one per schedule (limit)",
            "bench.asyncio_raw:call_at_register_many",
            "metrics",
            kw,
        ),
        Peer(
            "xtasks",
            "xtasks Task(Every(hours=1)) + add + start",
            "bench.xtasks_bench:register_many",
            "metrics",
            kw,
        ),
        Peer(
            "apscheduler3",
            "APScheduler 3 add_job(IntervalTrigger) + start",
            "bench.apscheduler_bench:register_many",
            "metrics",
            kw,
        ),
        _apscheduler4(
            "apscheduler4",
            "APScheduler 4.0a6 add_schedule + start",
            "bench.apscheduler4_bench:register_many",
            "metrics",
            kw,
        ),
    ]
    _repeat(peers, repeat)
    # Bytes are deterministic: one tracemalloc run each (it slows allocation a lot), for
    # the peers that ran at all (one never installed has nothing to trace).
    traced = [
        dataclasses.replace(
            p, kwargs={**kw, "trace": True}, samples=[], error=None if p.samples else p.error
        )
        for p in peers
    ]
    _repeat(traced, 1)
    for peer, trace in zip(peers, traced, strict=True):
        if trace.samples:
            for sample in peer.samples:
                sample.update(trace.samples[0])
        elif peer.error is None:
            peer.error = f"tracemalloc run: {trace.error}"
    print(
        f"\n== 6. {count:,} interval schedules: build + register + start, bytes each, "
        f"idle CPU; {repeat} fresh processes each, medians =="
    )
    limit = peers[0]
    head = (
        f"{'peer':<46} {'seconds':>8} {'ratio':>7} {'B/sched':>8} {'ratio':>7} "
        f"{'idle CPU ms/s':>13}"
    )
    print(head)
    print("-" * len(head))
    for peer in peers:
        seconds, size, idle_cpu = (peer.median(m) for m in ("seconds", "bytes", "idle_cpu"))
        if seconds is None or idle_cpu is None:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        shown = f"{size:>8,.0f}" if size is not None else f"{'n/a':>8}"
        print(
            f"{peer.name:<46} {seconds:>8.3f} {_x(_ratio(seconds, limit.median('seconds'))):>7} "
            f"{shown} {_x(_ratio(size, limit.median('bytes'))):>7} {idle_cpu * 1e3:>13.2f}"
        )
        if peer.error:
            print(f"{'':<46} ({peer.error})")
    print("bytes: tracemalloc's live bytes once started, per schedule (a separate run)")
    return peers


def _x(ratio: float | None, sign: str = "x") -> str:
    """A ratio to the limit: two decimals, one from 10 up; ``sign`` is ``×`` in Markdown."""
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}{sign}" if ratio < 10 else f"{ratio:.1f}{sign}"


def _idle(
    count: int, idle_seconds: float, add_budget: float, memory_budget: float
) -> dict[str, Any]:
    """Section 4, in this process: the phases of registering and idling ``count`` tasks."""
    from . import idle  # imports xtasks: only when this section runs

    print(f"\n== 4. idle cost: {count:,} xtasks tasks with Every(hours=1) ==")
    try:
        empty = idle.idle_cost(0, idle_seconds, add_budget)
        cost = idle.idle_cost(count, idle_seconds, add_budget)
    except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    if cost.truncated:
        print(
            f"!! adding all {count:,} tasks would exceed the {add_budget:g} s budget: "
            f"stopped at {cost.added:,}. The last {idle.CHUNK:,} adds took "
            f"{cost.last_chunk_add:.2f} s ({cost.last_chunk_add / idle.CHUNK * 1e3:.2f} ms "
            f"per add): the cost of add grows with the number of tasks registered. "
            f"Extrapolated time for {count:,}: ~{cost.add_extrapolated:,.0f} s."
        )
    n = cost.added
    print(f"tasks registered                  {n:>12,}")
    print(
        f"build Task objects                {cost.build:>12.3f} s  ({cost.build / n * 1e6:.1f} us/task)"
    )
    print(
        f"scheduler.add (before start)      {cost.add:>12.3f} s  ({cost.add / n * 1e6:.1f} us/task)"
    )
    print(f"async with: enter                 {cost.enter:>12.3f} s")
    print(f"async with: exit                  {cost.exit:>12.3f} s")
    print(
        f"CPU over {cost.idle_seconds:.2f} s idle              {cost.idle_cpu * 1e3:>12.2f} ms "
        f"(empty scheduler: {empty.idle_cpu * 1e3:.2f} ms; "
        f"{cost.idle_cpu / cost.idle_seconds * 100:.3f} % of a core)"
    )
    print(f"events while idle                 {cost.events:>12,}")
    try:
        memory = idle.idle_memory(n, memory_budget)
    except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
        print(f"memory: FAILED: {type(exc).__name__}: {exc}")
        return {"cost": asdict(cost), "empty_idle_cpu": empty.idle_cpu}
    scope = "" if memory.added == n else f" (budget: measured on {memory.added:,} tasks)"
    print(
        f"tracemalloc after start           {memory.current / 2**20:>12.1f} MiB "
        f"({memory.per_task:,.0f} B/task; x {count:,} = "
        f"{memory.per_task * count / 2**20:,.0f} MiB){scope}"
    )
    print(f"tracemalloc peak (build+add+start){memory.peak / 2**20:>12.1f} MiB")
    return {"cost": asdict(cost), "empty_idle_cpu": empty.idle_cpu, "memory": asdict(memory)}


def _cell(peer: Peer | None, text: str) -> str:
    """A Markdown cell: ``text``, or why the peer has no figure."""
    if peer is None:
        return ""
    if not peer.samples:
        return f"failed: {peer.error}"
    return text


def _md_rate(peer: Peer, limit: Peer, metric: str = "rate") -> str:
    value = peer.median(metric)
    if value is None:
        return _cell(peer, "")
    if peer is limit:
        return f"{value:,.0f}"
    return f"{value:,.0f} ({_x(_ratio(value, limit.median(metric)), '×')})"


def _md_growth(peer: Peer, limit: Peer) -> str:
    value = peer.median("rss_growth")
    if value is None:
        return _cell(peer, "")
    if peer is limit:
        return f"+{value / MiB:,.0f} MiB"
    return f"+{value / MiB:,.0f} MiB ({_x(_ratio(value, limit.median('rss_growth')), '×')})"


def _md_every(peer: Peer, limit: Peer) -> str:
    p50, p99, cpu = (peer.median(m) for m in ("p50", "p99", "cpu"))
    if p50 is None or p99 is None or cpu is None:
        return _cell(peer, "")
    text = f"{p50 * 1e3:.2f} / {p99 * 1e3:.2f} ms / {cpu:.2f} s"
    if peer is limit:
        return text
    p99_x, cpu_x = _ratio(p99, limit.median("p99")), _ratio(cpu, limit.median("cpu"))
    return f"{text} (p99 {_x(p99_x, '×')}, CPU {_x(cpu_x, '×')})"


def _md_register(peer: Peer, limit: Peer) -> str:
    seconds, size, idle_cpu = (peer.median(m) for m in ("seconds", "bytes", "idle_cpu"))
    if seconds is None or idle_cpu is None:
        return _cell(peer, "")
    size_text = f"{size:,.0f} B" if size is not None else "? B"
    text = f"{seconds:.2f} s / {size_text} / {idle_cpu * 1e3:.1f} ms/s"
    if peer is limit:
        return text
    time_x, size_x = _ratio(seconds, limit.median("seconds")), _ratio(size, limit.median("bytes"))
    return f"{text} (time {_x(time_x, '×')}, bytes {_x(size_x, '×')})"


#: The summary table's peer columns, after the raw limit.
_MD_COLUMNS = ("xtasks", "apscheduler3", "apscheduler4", "taskiq")
#: How the raw limit of each table row is named.
_MD_LIMITS = {"run_in_executor": "`run_in_executor`", "call_at": "`call_at`"}


def _md_row(
    label: str, peers: list[Peer], limit_key: str, cell: Callable[[Peer, Peer], str]
) -> str:
    """One row of the summary table: the raw limit, then each peer's ``cell`` against it
    (an empty cell for a peer the section does not have)."""
    by = {peer.key: peer for peer in peers}
    limit = by[limit_key]
    cells = "".join(f" {cell(by[key], limit)} |" if key in by else " |" for key in _MD_COLUMNS)
    return f"| {label} | {_MD_LIMITS[limit_key]} {cell(limit, limit)} |{cells}"


def _startup(plugins: int, repeat: int) -> list[Peer]:
    """Section 7: ``import xtasks`` alone, and with a ``Scheduler()`` discovering plugins."""
    folder = startup.make_plugins(plugins)
    peers = [
        Peer("import", "import xtasks (limit)", "bench.startup:import_only", "metrics"),
        Peer(
            "discover",
            f"import xtasks + Scheduler() with {plugins} plugins",
            "bench.startup:import_and_discover",
            "metrics",
            {"plugins": folder},
        ),
    ]
    _repeat(peers, repeat)
    shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n== 7. start-up: import, and discovery of {plugins} installed plugins; {repeat} "
        "fresh processes each, medians =="
    )
    limit = peers[0]
    head = f"{'peer':<46} {'seconds':>8} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for peer in peers:
        seconds = peer.median("seconds")
        if seconds is None:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        print(f"{peer.name:<46} {seconds:>8.3f} {_x(_ratio(seconds, limit.median('seconds'))):>7}")
    tasks = peers[1].median("tasks")
    if tasks is not None and tasks != plugins:
        print(f"(discovery found {tasks:.0f} of the {plugins} plugins' tasks)")
    return peers


def _markdown(
    sections: dict[str, list[Peer]], args: argparse.Namespace, machine: str, command: str
) -> str:
    """The summary table: one row per workload, ratios to the raw limit of the same run."""
    rows = [
        "| workload | raw limit | xtasks | APScheduler 3 | APScheduler 4.0a6 | taskiq |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if "async" in sections:
        by = {peer.key: peer for peer in sections["async"]}
        limit = by["asyncio"]
        xtasks = (
            f"memory {_md_rate(by['xtasks'], limit)}; SQLite {_md_rate(by['xtasks_sqlite'], limit)}"
        )
        aps4 = by["apscheduler4"]
        note = _aps4_async_note(args.n) if aps4.samples else ""
        rows.append(
            f"| {args.n:,} no-op async one-shots, runs/s | asyncio `TaskGroup` "
            f"{_md_rate(limit, limit)} | {xtasks} | {_md_rate(by['apscheduler3'], limit)} | "
            f"{_md_rate(aps4, limit)}{note} | {_md_rate(by['taskiq'], limit)} |"
        )
        # No ratio between memory figures of different N (shown as if it were the limit).
        aps4_growth = _md_growth(aps4, aps4 if note else limit)
        memory = (
            f"memory {_md_growth(by['xtasks'], limit)}; "
            f"SQLite {_md_growth(by['xtasks_sqlite'], limit)}"
        )
        rows.append(
            f"| same, peak RSS growth | asyncio {_md_growth(limit, limit)} | {memory} | "
            f"{_md_growth(by['apscheduler3'], limit)} | "
            f"{aps4_growth}{note} | "
            f"{_md_growth(by['taskiq'], limit)} |"
        )
    if "sync" in sections:
        rows.append(
            _md_row(
                f"{args.n_sync:,} no-op sync runs through threads, runs/s",
                sections["sync"],
                "run_in_executor",
                _md_rate,
            )
        )
    if "every_second" in sections:
        rows.append(
            _md_row(
                f"{args.schedules:,} schedules every 1 s for {args.schedule_seconds:g} s: "
                "p50 / p99 lateness / CPU",
                sections["every_second"],
                "call_at",
                _md_every,
            )
        )
    if "register" in sections:
        rows.append(
            _md_row(
                f"{args.interval_schedules:,} interval schedules: build + register + start / "
                "bytes each / idle CPU",
                sections["register"],
                "call_at",
                _md_register,
            )
        )
    if "startup" in sections:
        bare, found = sections["startup"]
        seconds, limit_s = found.median("seconds"), bare.median("seconds")
        cell = (
            _cell(found, "")
            if seconds is None
            else f"{seconds * 1e3:.0f} ms ({_x(_ratio(seconds, limit_s), '×')})"
        )
        rows.append(
            "| `import xtasks` + `Scheduler()` discovering 50 plugins | bare `import xtasks` "
            f"{(limit_s or 0) * 1e3:.0f} ms | {cell} | | | |"
        )
    note = (
        f"{machine}; medians of {args.repeat} fresh processes per peer, interleaved; `{command}`."
    )
    return "\n".join([note, "", *rows] if len(rows) > 2 else [note])


def _fleet(tasks: int, seconds: float) -> dict[str, Any]:
    """Section 8: one and three replica processes on each shared store that answers."""
    import socket

    from . import fleet

    print(f"\n8. a fleet on one store: {tasks:,} tasks every 1 s, and submissions ({seconds:g} s)")
    servers = {"postgres": ("127.0.0.1", 5432), "redis": ("127.0.0.1", 6379)}
    report: dict[str, Any] = {}
    for kind in ("sqlite", "postgres", "redis"):
        if kind in servers:
            try:
                socket.create_connection(servers[kind], timeout=2).close()
            except OSError as exc:
                print(f"  {kind}: not measured, no server at {servers[kind]} ({exc})")
                continue
        for workload in ("fires", "submissions"):
            for replicas in (1, 3):
                try:
                    with fleet.fresh_store(kind) as url:
                        figures = fleet.measure(
                            url, replicas=replicas, workload=workload, seconds=seconds, tasks=tasks
                        )
                except Exception as exc:  # noqa: BLE001 - one failing backend spares the rest
                    print(f"  {kind} {workload} x{replicas}: failed: {type(exc).__name__}: {exc}")
                    continue
                report[f"{kind}/{workload}/{replicas}"] = figures
                print(
                    f"  {kind:8} {workload:11} {replicas} replica(s): "
                    f"{figures['rate']:>9,.0f} runs/s, {figures['duplicates']:.0f} duplicates, "
                    f"{figures['missed']:.0f} missed, "
                    f"{figures['cpu_per_run_us']:,.0f} µs replica CPU per run",
                    flush=True,
                )
        if kind == "postgres":
            report["apscheduler3"] = _apscheduler3_fleet()
    return report


def _celery(n: int, batch: int, repeat: int) -> dict[str, Any] | None:
    """Section 9: the Celery executor against ``send_task`` + ``AsyncResult.get``."""
    import socket

    from . import celery_bench

    print(f"\n9. on a Celery worker: {n} runs one at a time, a batch of {batch:,}")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
        figures = celery_bench.measure(n, batch, repeat)
    except Exception as exc:  # noqa: BLE001 - no Redis or no Celery: say so, go on
        print(f"  not measured: {type(exc).__name__}: {exc}")
        return None
    celery_bench.report(figures)
    return figures


def _apscheduler3_fleet() -> dict[str, Any] | None:
    """The peer: APScheduler 3 in three processes on one job store in PostgreSQL."""
    from . import apscheduler_fleet

    try:
        figures = apscheduler_fleet.measure("postgresql://postgres@127.0.0.1:5432/test")
    except Exception as exc:  # noqa: BLE001 - a peer failing spares the rest
        print(f"  APScheduler 3 fleet: failed: {type(exc).__name__}: {exc}")
        return None
    print(
        f"  APScheduler 3, 3 processes on one SQLAlchemyJobStore (PostgreSQL), a job every "
        f"0.5 s for 5 s: {figures['executions']:.0f} runs of {figures['fires']:.0f} fires "
        f"({figures['duplicates']:.0f} duplicates)",
        flush=True,
    )
    return figures


def _fleet_markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        (
            f"Section 8: one run of each, over a {args.fleet_seconds:g} s window, each replica "
            "a process of its own on this machine, the database server too."
        ),
        "",
        "| fleet (history kept) | store | 1 replica | 3 replicas | duplicates |",
        "| --- | --- | --- | --- | --- |",
    ]
    for workload, title in (
        ("fires", f"fires of {args.fleet_tasks:,} tasks every 1 s, runs/s"),
        ("submissions", "submissions, runs/s in total"),
    ):
        for kind, label in (
            ("sqlite", "SQLite file"),
            ("postgres", "PostgreSQL"),
            ("redis", "Redis"),
        ):
            one, three = report.get(f"{kind}/{workload}/1"), report.get(f"{kind}/{workload}/3")
            if one is None and three is None:
                continue
            cells = [f"{f['rate']:,.0f}" if f else "failed" for f in (one, three)]
            duplicates = sum(f["duplicates"] for f in (one, three) if f)
            rows.append(f"| {title} | {label} | {cells[0]} | {cells[1]} | {duplicates:.0f} |")
    aps = report.get("apscheduler3")
    if aps:
        rows.append(
            "| APScheduler 3: one job every 0.5 s for 5 s, runs | PostgreSQL (SQLAlchemyJobStore) "
            f"| | {aps['executions']:.0f} of {aps['fires']:.0f} fires | {aps['duplicates']:.0f} |"
        )
    return "\n".join(rows)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in ("xtasks", "anyio", "apscheduler", "taskiq", "pydantic"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def _profile(n: int) -> None:
    """cProfile the xtasks submit path (submit + wait) for ``n`` async jobs."""
    from . import xtasks_bench  # imports xtasks: only for this mode
    from .child import WARMUP_JOBS

    xtasks_bench.submit_async(min(n, WARMUP_JOBS))
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = xtasks_bench.submit_async(n)
    profiler.disable()
    print(f"\n== cProfile: xtasks submit + wait, N={n:,} ({n / seconds:,.0f} jobs/s profiled) ==")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=None, help="async jobs (100000; quick 2000)")
    parser.add_argument("--n-sync", type=int, default=None, help="sync jobs (10000; quick 1000)")
    parser.add_argument("--repeat", type=int, default=None, help="fresh processes per peer (3)")
    parser.add_argument("--threads", type=int, default=40, help="thread pool size (40)")
    parser.add_argument("--idle-tasks", type=int, default=None, help="section 4 tasks (100000)")
    parser.add_argument(
        "--schedules", type=int, default=1000, help="section 5 schedules every second (1000)"
    )
    parser.add_argument(
        "--schedule-seconds", type=float, default=None, help="section 5 window (10; quick 2)"
    )
    parser.add_argument(
        "--interval-schedules",
        type=int,
        default=None,
        help="section 6 schedules (100000; quick 10000)",
    )
    parser.add_argument(
        "--fleet-tasks", type=int, default=5000, help="section 8 tasks every second (5000)"
    )
    parser.add_argument("--quick", action="store_true", help="a run under two minutes")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown summary")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write JSON")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated sections to run (default: all; with --quick, 1 to 7)",
    )
    parser.add_argument("--skip-precision", action="store_true", help="skip section 3")
    parser.add_argument("--skip-idle", action="store_true", help="skip section 4")
    parser.add_argument(
        "--profile", action="store_true", help="only cProfile the xtasks submit path"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (2_000 if quick else 100_000)
    args.n_sync = args.n_sync or (1_000 if quick else 10_000)
    args.repeat = args.repeat or 3
    args.idle_tasks = args.idle_tasks or (10_000 if quick else 100_000)
    args.schedule_seconds = args.schedule_seconds or (2.0 if quick else 10.0)
    args.interval_schedules = args.interval_schedules or (10_000 if quick else 100_000)
    args.precision_seconds = 1.0 if quick else 3.0
    args.fleet_seconds = 3.0 if quick else 10.0
    args.idle_seconds = 1.0 if quick else 2.0
    args.add_budget = 3.0 if quick else 15.0
    args.memory_budget = 2.0 if quick else 10.0
    # Section 8 starts a dozen fleets of processes: over a minute even when quick.
    args.celery_runs = 100 if quick else 500
    args.celery_batch = 500 if quick else 2000
    only = args.only or ("1,2,3,4,5,6,7" if quick else "1,2,3,4,5,6,7,8,9")
    args.sections = {part.strip() for part in only.split(",")}
    if args.skip_precision:
        args.sections.discard("3")
    if args.skip_idle:
        args.sections.discard("4")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.disable(logging.CRITICAL)  # sections 4 and --profile run here: silence xtasks
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    cores = os.cpu_count()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    machine = f"{python} on {platform.system()} {platform.machine()}, {cores} cores"
    versions = _versions()
    print(machine)
    if not args.profile and args.sections & {"1", "2", "5", "6"}:  # APScheduler 4's sections
        installed, _ = _apscheduler4_python()
        versions["apscheduler4"] = APSCHEDULER4.partition("==")[2] if installed else None
    print(", ".join(f"{dist} {found or '(not installed)'}" for dist, found in versions.items()))
    if args.profile:
        _profile(args.n)
        return 0
    print(
        f"async N={args.n:,}, sync N={args.n_sync:,}, repeats={args.repeat} (fresh processes), "
        f"max_concurrency=100, threads={args.threads}"
    )
    sections: dict[str, list[Peer]] = {}
    idle_report: dict[str, Any] | None = None
    if "1" in args.sections:
        sections["async"] = _async_peers(args.n)
        _throughput("1. tiny async jobs", sections["async"], args.n, args.repeat)
    if "2" in args.sections:
        sections["sync"] = _sync_peers(args.n_sync, args.threads)
        _throughput("2. tiny sync jobs", sections["sync"], args.n_sync, args.repeat)
    if "3" in args.sections:
        sections["precision"] = _precision(0.2, args.precision_seconds)
    if "4" in args.sections:
        idle_report = _idle(args.idle_tasks, args.idle_seconds, args.add_budget, args.memory_budget)
    if "5" in args.sections:
        sections["every_second"] = _every_second(args.schedules, args.schedule_seconds, args.repeat)
    if "6" in args.sections:
        sections["register"] = _register(args.interval_schedules, 1.0, args.repeat)
    if "7" in args.sections:
        sections["startup"] = _startup(50, args.repeat)
    fleet_report: dict[str, Any] | None = None
    if "8" in args.sections:
        fleet_report = _fleet(args.fleet_tasks, args.fleet_seconds)
    celery_report: dict[str, Any] | None = None
    if "9" in args.sections:
        celery_report = _celery(args.celery_runs, args.celery_batch, args.repeat)
    elapsed = time.perf_counter() - started
    command = ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
    if args.markdown:
        print("\n" + _markdown(sections, args, machine, " ".join(command)))
        if fleet_report:
            print("\n" + _fleet_markdown(fleet_report, args))
    if args.json is not None:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
            "machine": {
                "cores": cores,
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "system": f"{platform.system()} {platform.release()}",
                "arch": platform.machine(),
                "versions": versions,
            },
            "settings": {
                key: value
                for key, value in vars(args).items()
                if key not in {"json", "sections", "only"}
            },
            "seconds": elapsed,
            "workloads": {
                name: {peer.key: peer.report() for peer in peers}
                for name, peers in sections.items()
            },
            "idle": idle_report,
            "fleet": fleet_report,
            "celery": celery_report,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal bench time: {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
