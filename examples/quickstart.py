"""The quick start: periodic, dependent, retried and one-shot work in one scheduler.

Run it with ``python examples/quickstart.py``; it prints what ran, then stops. Run it
again: history lives in ``xtasks-quickstart.db`` (SQLite), so the counts grow.
"""

from __future__ import annotations

import logging
import time

import anyio

from xtasks import Every, Scheduler, Task


async def nettoyer_cache() -> None:
    print("cache cleaned")


def calculer_statistiques() -> dict[str, int]:
    time.sleep(0.1)  # blocking work is fine: sync functions run in a thread pool
    return {"orders": 42}


async def exporter_rapport() -> str:
    return "rapport.pdf"


async def envoyer_email(to: str) -> None:
    print(f"email sent to {to}")


# plugins=False: this program shows its own tasks only. By default every installed plugin
# joins a Scheduler(), and one shipping a task named like these ("nettoyage_cache" is a
# common name) would clash with it (DuplicateTaskError, naming the plugin).
scheduler = Scheduler(store="sqlite:///xtasks-quickstart.db", plugins=False)  # or "memory://"
scheduler.add(Task("nettoyage_cache", nettoyer_cache, trigger=Every(hours=1)))
scheduler.add(Task("calcul_stats", calculer_statistiques, priority="high"))
scheduler.add(
    Task(
        "export_rapport",
        exporter_rapport,
        depends_on=["calcul_stats"],
        max_retries=3,
        retry_delay=60,
        timeout=300,
    )
)


async def main() -> None:
    async with scheduler:
        rec = await scheduler.run("export_rapport")  # runs calcul_stats first, then waits
        print(f"{rec.task}: {rec.status.value} -> {rec.result!r}")
        runs = await scheduler.history("calcul_stats", limit=1000)
        print(f"calcul_stats has run {len(runs)} time(s) so far, across restarts")
        mail = await (await scheduler.submit(envoyer_email, "a@b.c")).wait()  # tracked one-shot
        print(f"{mail.task}: {mail.status.value}")
        info = await scheduler.describe("nettoyage_cache")
        print(f"nettoyage_cache next fires at {info.next_fire:%H:%M:%S} UTC")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    anyio.run(main)
