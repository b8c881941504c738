"""The Celery app of section 9 (``bench.celery_bench``): one no-op task. Configured from
the environment the bench sets, so that its worker and the bench agree."""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/14")
PREFIX = os.environ.get("BENCH_CELERY_PREFIX", "xt-bench-")

app = Celery("xtasks_bench", broker=URL, backend=URL, set_as_current=False)
app.conf.update(
    task_track_started=True,
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", f"{PREFIX}q"),
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(value: int) -> int:
    return value
