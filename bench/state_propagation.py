"""How long a pause, resume or cancel made through one worker takes to reach the others.

``python -m bench.state_propagation [--store sqlite,postgres,redis] [--trials 10]`` serves
the tests' app (``tests.replicas.web``: a ``tick`` every 0.5 s and a ``hang`` that runs
until cancelled) with ``uvicorn --workers 3`` on a fresh store of each kind, and times,
from the moment the action's HTTP answer is received:

- **pause**: until the last worker applied it (its ``TaskStateChanged``), and until the
  last fire of ``tick`` that still started anywhere (0 when none did);
- **resume**: until the last worker applied it;
- **cancel**: of a ``hang`` run going on one worker, sent to another: until that run
  ended ``cancelled`` (its final record stored) on the worker running it.

Nothing reads the state meanwhile (a read through the manager catches its worker up at
once): these are the state sync's own figures, polling (SQLite) or notified
(PostgreSQL ``LISTEN``, Redis pub/sub). Prints medians and worst cases; ``--json PATH``
writes every sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from tests.replicas.served import Served, worker

from bench.fleet import fresh_store

if TYPE_CHECKING:
    import httpx

__all__ = ["measure"]


def _last_fire_after(served: Served, since: int, answered: float) -> float:
    """Seconds from ``answered`` to the last ``tick`` start after it (0.0: none)."""
    starts = [
        float(line.split()[5])
        for line in served.drain()[since:]
        if line.startswith("FIRE tick ") and float(line.split()[5]) > answered
    ]
    return max(starts, default=answered) - answered


def _pause_and_resume(served: Served, samples: dict[str, list[float]]) -> None:
    served.wait_for(lambda line: line.startswith("FIRE tick "))
    mark = len(served.drain())
    response = served.fresh("POST", "/manager/tasks/tick/pause")
    answered = time.time()
    response.raise_for_status()
    arrived = served.arrivals("tick paused", mark)
    samples["pause: last worker applied it"].append(max(arrived.values()) - answered)
    # Fires claimed before the pause arrived start at most one poll later; wait out the
    # sync's worst case (0.8 s poll, plus the poll itself) and one tick before counting.
    time.sleep(2.0)
    samples["pause: last fire started"].append(_last_fire_after(served, mark, answered))
    mark = len(served.drain())
    response = served.fresh("POST", "/manager/tasks/tick/resume")
    answered = time.time()
    response.raise_for_status()
    arrived = served.arrivals("tick active", mark)
    samples["resume: last worker applied it"].append(max(arrived.values()) - answered)


def _cancel(
    served: Served, runner: httpx.Client, canceller: httpx.Client, samples: dict[str, list[float]]
) -> None:
    accepted = runner.post("/manager/tasks/hang/run")
    accepted.raise_for_status()
    run_id = accepted.json()["run_id"]
    served.wait_for(lambda line: line.startswith(f"STARTED hang {run_id} "))
    response = canceller.delete("/manager/tasks/hang")
    answered = time.time()
    response.raise_for_status()
    ended = served.wait_for(lambda line: line.startswith(f"ENDED hang {run_id} "), timeout=30)
    status, _, at = ended.split()[3:]
    if status != "cancelled":
        raise RuntimeError(f"the run ended {status}, not cancelled: {ended}")
    samples["cancel: the run stopped on another worker"].append(float(at) - answered)
    # For the next trial: the runner's next run request reads this resume first.
    canceller.post("/manager/tasks/hang/resume").raise_for_status()


def measure(kind: str, trials: int) -> dict[str, list[float]]:
    """Every sample, in seconds, by what was measured, on a fresh store of ``kind``."""
    samples: dict[str, list[float]] = {
        "pause: last worker applied it": [],
        "pause: last fire started": [],
        "resume: last worker applied it": [],
        "cancel: the run stopped on another worker": [],
    }
    with fresh_store(kind) as url:
        served = Served(url)
        try:
            for _ in range(trials):
                _pause_and_resume(served, samples)
            runner, canceller = served.clients_on_two_workers()
            with closing(runner), closing(canceller):
                if worker(runner) == worker(canceller):  # pragma: no cover - by construction
                    raise RuntimeError("both clients reached one worker")
                for _ in range(trials):
                    _cancel(served, runner, canceller, samples)
        finally:
            code, err = served.stop()
        if code != 0:
            raise RuntimeError(f"uvicorn exited {code}: {err}")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_propagation", description=__doc__)
    parser.add_argument("--store", default="sqlite,postgres,redis", help="kinds, comma-separated")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args(argv)
    everything: dict[str, dict[str, list[float]]] = {}
    print(f"{'store':10} {'what (seconds from the answer)':44} {'n':>3} {'median':>7} {'worst':>7}")
    for kind in args.store.split(","):
        everything[kind] = samples = measure(kind, args.trials)
        for what, values in samples.items():
            median, worst = statistics.median(values), max(values)
            print(f"{kind:10} {what:44} {len(values):3} {median:7.3f} {worst:7.3f}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
