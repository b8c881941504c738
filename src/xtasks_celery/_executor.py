"""``CeleryExecutor``: each attempt of a task is a Celery task sent by name to the
workers a team already runs; xtasks keeps the schedule, retries, timeouts, history,
alerts and the manager page.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - redis.asyncio runs on asyncio only: say so plainly
import functools
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.to_thread

from xtasks import Attempt, ConfigError, Task
from xtasks.abc import Executor, with_worker_traceback

from ._errors import CeleryResultError, CeleryTaskRevoked, CeleryWorkerLost
from ._watcher import ResultWatcher, Watch

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from celery import Celery
    from redis.asyncio import Redis

__all__ = ["CeleryExecutor"]

_log = logging.getLogger("xtasks.celery")

#: Where Celery's own frames end in a worker's traceback: they are left out of history.
_CELERY_FRAMES = ("/celery/app/trace.py",)
#: Seconds a worker has to answer one liveness ping.
_PING_TIMEOUT = 2.0
#: The name of the watcher's Redis connections (``CLIENT LIST``).
WATCHER_NAME = "xtasks-celery-watcher"
#: How the result backend's URL must start: the watcher reads Redis.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@final
class CeleryExecutor(Executor):
    """Runs each attempt on a Celery worker: sent by name with ``send_task``, its outcome
    heard from Celery's Redis result backend.

    ``Scheduler(executors=[CeleryExecutor(app)])``, then
    ``Task("rapport", "myapp.tasks.rapport", executor="celery", trigger=...)``. The task's
    function is the Celery task's name, not imported here.

    :param app: the application's Celery app (its broker, routes and serializer are
        used; its result backend must be Redis, with ``task_track_started=True`` on the
        workers so that a run turns ``running`` when a worker picks it up).
    :param name: what ``Task(executor=...)`` selects.
    :param slots: attempts in flight at once on this executor (``None``: no bound but
        the tasks' own ``max_concurrency``; the workers' pools bound the work).
    :param queue: the queue every attempt is sent to (``None``: the app's routing).
    :param routes: per xtasks task name, ``send_task`` options for that task's attempts
        (``{"rapport": {"queue": "reports", "priority": 9}}``); over ``queue``.
    :param options: ``send_task`` options for every attempt (``headers``, ``priority``,
        ``soft_time_limit``...).
    :param terminate: on a timeout or a cancel, revoke with ``terminate=True``, which
        kills a task already running -- only on the ``prefork``, ``eventlet`` and
        ``gevent`` pools, and perhaps after that process took another task. Off: a task
        still queued is dropped, one already running finishes and its outcome is ignored.
    :param lost_after: seconds the worker running an attempt may go without answering a
        ping before the attempt fails with :class:`CeleryWorkerLost` (``None``: never;
        a ``solo`` pool cannot answer while it runs a task).
    :param sweep_interval: seconds between two reads of every outcome in flight (the
        safety net under pub/sub).
    """

    needs_target = True
    reports_start = True

    def __init__(
        self,
        app: Celery,
        *,
        name: str = "celery",
        slots: int | None = None,
        queue: str | None = None,
        routes: Mapping[str, Mapping[str, Any]] | None = None,
        options: Mapping[str, Any] | None = None,
        terminate: bool = False,
        lost_after: float | None = 60.0,
        sweep_interval: float = 15.0,
    ) -> None:
        if lost_after is not None and not (math.isfinite(lost_after) and lost_after > 0):
            msg = f"lost_after must be a positive number of seconds or None; got {lost_after!r}"
            raise ConfigError(msg, field="lost_after")
        self.name = name
        self.slots = slots
        self.interrupts = terminate
        self.app = app
        self._base_options = dict(options or {})
        if queue is not None:
            self._base_options["queue"] = queue
        self._routes = {task: dict(opts) for task, opts in (routes or {}).items()}
        self._terminate = terminate
        self._lost_after = lost_after
        self._sweep_interval = sweep_interval
        self._sender: Celery | None = None
        self._client: Redis | None = None
        self._watcher: ResultWatcher | None = None
        self._key_for: Callable[[str], bytes] | None = None
        #: Attempts a worker started: task id -> (its watch, the worker running it).
        self._running: dict[str, tuple[Watch, str]] = {}
        self._seen: dict[str, float] = {}  # worker -> when it last answered (monotonic)
        self._send_limiter: anyio.CapacityLimiter | None = None
        self._serving: anyio.CancelScope | None = None
        self._names: dict[str, str] = {}

    # --- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Check the app's result backend, make the sending copy of the app, connect."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            msg = "the Celery executor needs the asyncio event loop (it reads Redis with "
            raise ConfigError(msg + "redis.asyncio); run the scheduler on asyncio") from None
        backend_url = str(self.app.conf.result_backend or "")
        if not backend_url.startswith(_REDIS_SCHEMES):
            shown = backend_url.split("://", 1)[0] + "://..." if backend_url else "none"
            raise ConfigError(
                f"executor {self.name!r}: the Celery app's result backend must be Redis "
                f"(result_backend='redis://host:6379/1'); it is {shown}",
                field="result_backend",
            )
        if not self.app.conf.task_track_started:
            _log.warning(
                "executor %r: the Celery app has task_track_started off: runs stay queued "
                "until they finish (set task_track_started=True for the workers)",
                self.name,
            )
        import redis.asyncio

        backend = self.app.backend
        self._key_for = backend.get_key_for_task
        self._sender = _send_only_copy(self.app)
        # Named, so that an operator sees it in CLIENT LIST.
        self._client = redis.asyncio.Redis.from_url(backend_url, client_name=WATCHER_NAME)
        self._watcher = ResultWatcher(
            self._client, backend.decode_result, sweep_interval=self._sweep_interval
        )
        self._serving = anyio.CancelScope()
        self._send_limiter = anyio.CapacityLimiter(8)

    async def serve(self) -> None:
        """Hear outcomes; ping the workers running attempts."""
        watcher = self._watcher
        if watcher is None:
            raise RuntimeError("CeleryExecutor.serve before open")
        assert self._serving is not None
        with self._serving:  # ends with close() too
            async with anyio.create_task_group() as tg:
                tg.start_soon(watcher.serve)
                if self._lost_after is not None:
                    tg.start_soon(self._liveness_loop, self._lost_after)

    async def close(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
        client, sender = self._client, self._sender
        self._client = self._sender = self._watcher = None
        if client is not None:
            await client.aclose()
        if sender is not None:
            await anyio.to_thread.run_sync(sender.close)

    def check(self, task: Task) -> None:
        """Refuse arguments that the app's serializer cannot send."""
        if not (task.args or task.kwargs):
            return
        serializer = self.app.conf.task_serializer
        try:
            from kombu import serialization

            serialization.dumps(  # type: ignore[no-untyped-call]
                (task.args, dict(task.kwargs)), serializer=serializer
            )
        except Exception as exc:
            raise ConfigError(
                f"task {task.name!r}: its args/kwargs cannot be sent to Celery with the "
                f"{serializer!r} serializer ({type(exc).__name__}: {exc}); pass plain "
                f"values (str, numbers, lists, dicts)",
                task=task.name,
                field="args",
            ) from exc

    # --- one attempt --------------------------------------------------------------

    async def run(self, attempt: Attempt) -> Any:
        watcher, key_for = self._watcher, self._key_for
        if watcher is None or key_for is None:
            raise RuntimeError(f"executor {self.name!r} is not open")
        task_id = _task_id(attempt)
        watch = await watcher.watch(task_id, key_for(task_id))
        try:
            await self._send(attempt, task_id)
            return await self._outcome(attempt, watch)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._revoke(task_id)
            raise
        finally:
            self._running.pop(task_id, None)
            with anyio.CancelScope(shield=True):
                await watcher.forget(watch)

    def celery_name(self, task: Task) -> str:
        """The name the task is sent under: its function string, ``module:function``
        written ``module.function`` as Celery names tasks by default."""
        name = self._names.get(task.target)
        if name is None:
            found = getattr(task.func, "name", None)  # a Celery task object, imported
            name = found if isinstance(found, str) else task.target.replace(":", ".")
            self._names[task.target] = name
        return name

    async def _send(self, attempt: Attempt, task_id: str) -> None:
        sender = self._sender
        assert sender is not None
        task = attempt.task
        options = {**self._base_options, **self._routes.get(task.name, {})}
        if task.timeout is not None:
            # A message still queued when xtasks gives up on the attempt is dropped.
            options.setdefault("expires", task.timeout)
        send = functools.partial(
            sender.send_task,
            self.celery_name(task),
            args=list(attempt.args),
            kwargs=dict(attempt.kwargs),
            task_id=task_id,
            **options,
        )
        await anyio.to_thread.run_sync(send, limiter=self._send_limiter)

    async def _outcome(self, attempt: Attempt, watch: Watch) -> Any:
        task_id = watch.task_id
        while True:
            meta = await watch.next_state()
            status = meta.get("status")
            if status == "STARTED":
                info = meta.get("result")
                worker = info.get("hostname") if isinstance(info, dict) else None
                if isinstance(worker, str) and task_id not in self._running:
                    self._running[task_id] = (watch, worker)
                    self._seen.setdefault(worker, anyio.current_time())
                attempt.started(worker if isinstance(worker, str) else None)
            elif status == "SUCCESS":
                attempt.started()  # no STARTED heard (task_track_started off, or missed)
                return meta.get("result")
            elif status == "FAILURE":
                attempt.started()
                raise _failure(meta)
            elif status == "REVOKED":
                raise CeleryTaskRevoked(task_id)
            elif status == "LOST":
                raise CeleryWorkerLost(task_id, meta["worker"], meta["silent_for"])
            elif status == "UNREADABLE":
                msg = f"the outcome of Celery task {task_id} cannot be read: {meta['result']}"
                raise CeleryResultError(msg)
            # PENDING, RECEIVED, RETRY (Celery's own retry): still going

    async def _revoke(self, task_id: str) -> None:
        sender = self._sender
        if sender is None:
            return
        revoke = functools.partial(sender.control.revoke, task_id, terminate=self._terminate)
        try:
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(revoke, limiter=self._send_limiter)
        except Exception as exc:  # noqa: BLE001 - the run is cancelled all the same
            _log.warning("revoking Celery task %s failed: %s: %s", task_id, type(exc).__name__, exc)

    # --- liveness -----------------------------------------------------------------

    async def _liveness_loop(self, lost_after: float) -> None:
        """Ping the workers running attempts; fail the attempts of one gone silent."""
        while True:
            await anyio.sleep(lost_after / 4)
            workers = sorted({worker for _, worker in self._running.values()})
            if not workers:
                self._seen.clear()
                continue
            answered = await self._ping(workers)
            now = anyio.current_time()
            for worker in answered:
                self._seen[worker] = now
            for task_id, (watch, worker) in list(self._running.items()):
                silent_for = now - self._seen.get(worker, now)
                if silent_for >= lost_after:
                    del self._running[task_id]
                    watch.heard({"status": "LOST", "worker": worker, "silent_for": silent_for})

    async def _ping(self, workers: list[str]) -> set[str]:
        sender = self._sender
        if sender is None:
            return set()
        # limit: back as soon as every worker asked has answered, not after the timeout.
        ping = functools.partial(
            sender.control.ping, destination=workers, timeout=_PING_TIMEOUT, limit=len(workers)
        )
        try:
            replies = await anyio.to_thread.run_sync(ping, limiter=self._send_limiter)
        except Exception as exc:  # noqa: BLE001 - the broker is down: nobody is judged
            _log.warning("pinging Celery workers failed: %s: %s", type(exc).__name__, exc)
            return set(workers)
        return {host for reply in replies for host in reply}


def _task_id(attempt: Attempt) -> str:
    """The run id for its first attempt; ``<run id>-<n>`` for retry ``n``."""
    run_id = attempt.run_id or uuid.uuid4().hex  # a direct call, outside any run
    return run_id if attempt.number == 1 else f"{run_id}-{attempt.number}"


def _failure(meta: Mapping[str, Any]) -> BaseException:
    """The task's exception, rebuilt, carrying the worker's traceback."""
    error = meta.get("result")
    if not isinstance(error, BaseException):
        error = CeleryResultError(f"the Celery task failed: {error!r}")
    traceback = meta.get("traceback")
    if isinstance(traceback, str) and traceback:
        with_worker_traceback(error, _without_celery_frames(traceback))
    return error


def _without_celery_frames(traceback: str) -> str:
    """The traceback without the frames of Celery's own tracer, which call the task."""
    lines = traceback.splitlines(keepends=True)
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith('  File "'):
            skipping = any(part in line for part in _CELERY_FRAMES)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


def _send_only_copy(app: Celery) -> Celery:
    """The app's configuration with no result backend: ``send_task`` on an app with a
    Redis backend subscribes that thread's backend to the task's channel, and nobody
    would ever read or end those subscriptions."""
    from celery import Celery

    sender = Celery(app.main, set_as_current=False)
    sender.conf.update(app.conf.changes)
    sender.conf.result_backend = None
    return sender
