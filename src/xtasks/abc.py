"""Interfaces for implementers: what a new backend, alerter, trigger or clock builds on.

- :class:`Store`: where claims, runs, task state and the audit trail live. A backend
  subclasses it, wraps its driver's exceptions in :class:`xtasks.StoreError`
  (``raise StoreError(...) from exc``) so no driver error leaks through, and proves itself
  with ``xtasks.testing.check_store``. Every method that does I/O is ``async``.
- :class:`RunChanges`: what :meth:`Store.run_changes` answers, the runs changed after a
  number, so a reader follows every replica's runs from the store.
- :class:`RunTotals`: what :meth:`Store.run_totals` answers, the fleet's finished runs
  counted by task and final status, with their durations in histogram buckets.
- :class:`TaskRecord`: the per-task state a :class:`Store` keeps between runs and across
  restarts (state, last fire, failure streak, grid anchor).
- :class:`Alerter`: delivers alerts to people (email, chat, pager); subclass it and pass
  it to ``Scheduler(alerters=[...])`` or contribute it from a plugin.
- :class:`Executor`: runs one attempt of a task's body somewhere -- on the loop, in a
  thread, in a process (the built-ins ``async``, ``sync``, ``process``) or on a remote
  worker fleet. A plugin subclasses it, proves it with ``xtasks.testing.check_executor``
  and registers it with ``Scheduler(executors=[...])`` or the ``xtasks_add_executors``
  hook; ``Task(executor="name")`` selects it. It receives an :class:`xtasks.Attempt`;
  :func:`with_worker_traceback` attaches the traceback of an error raised elsewhere.
- :class:`Trigger`: when a task fires. ``Every``, ``Cron`` and ``At`` are triggers; a
  subclass that answers ``next_fire(after)`` purely schedules tasks its own way.
- :class:`Clock`: tells the time and sleeps until a deadline; ``Scheduler(clock=...)``
  takes one (``xtasks.testing.FakeClock`` is the one tests use). A protocol: anything with
  these two methods fits, no subclassing needed.

Users who only schedule tasks never need this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._clock import Clock
from ._errors import StoreError
from ._feed import RunChanges, RunTotals
from ._runs import WORKER_TRACEBACK, TaskRecord
from ._triggers import Trigger

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from datetime import datetime

    from ._decisions import StartAttempt as Attempt
    from ._events import Alert
    from ._runs import AuditRecord, RunRecord, RunStatus, TaskState
    from ._task import Task

__all__ = [
    "Alerter",
    "Clock",
    "Executor",
    "RunChanges",
    "RunTotals",
    "Store",
    "TaskRecord",
    "Trigger",
    "with_worker_traceback",
]

_E = TypeVar("_E", bound=BaseException)


class Store(ABC):
    """Where claims, run records, task state and the audit trail live.

    One store object is used by one scheduler; several schedulers (replicas) may open
    stores on the same URL, and the store is what makes them agree.
    """

    @abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema. Called before any other call, and
        again after :meth:`close` when a scheduler starts again: a closed store opens
        again, with everything written before.

        :raises StoreError: when the backend cannot be reached or prepared.
        """

    @abstractmethod
    async def close(self) -> None:
        """Flush and release resources. Idempotent: a second call does nothing."""

    @abstractmethod
    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        """Claim the fire ``(task, fire_time)`` for ``replica``.

        Exactly one claim of a given pair succeeds across every store object opened on the
        same backend, concurrently or not; the others return ``False`` (the normal path for
        a replica that lost the race, not an error). A successful claim also records
        ``fire_time`` as the task's ``last_fire`` when it is later than the one stored.

        :return: whether this call won the claim.
        :raises StoreError: on backend failure (the claim is then not made).
        """

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        """Claim several fires ``(task, fire_time)`` for ``replica``, each as
        :meth:`claim_fire` would, in order (the same pair twice: the second loses).

        The scheduler claims what came due meanwhile in one call. This default claims one
        at a time; a backend that can do it in one round trip (one transaction) should.

        :return: one outcome per fire, in order: ``True`` (won), ``False`` (taken
            already), or the :class:`~xtasks.StoreError` that kept it from being claimed
            (it was then not made). After a failure this default tries no more: the
            fires after it get the same error.
        """
        outcomes: list[bool | StoreError] = []
        for i, (task, fire_time) in enumerate(fires):
            try:
                outcomes.append(await self.claim_fire(task, fire_time, replica))
            except StoreError as exc:
                outcomes += [exc] * (len(fires) - i)
                break
        return outcomes

    #: Seconds a live record's lease lasts without a renewal (10 s by default).
    lease_ttl: float = 10.0

    @abstractmethod
    async def save_run(self, record: RunRecord) -> bool:
        """Insert or replace the record with ``record.id``. Safe to repeat.

        Leases and fencing: a live record (``queued``, ``waiting`` or ``running``) gives
        its ``replica`` the lease on the run until store time + :attr:`lease_ttl`
        (renewed by :meth:`renew_leases`, and by each later live write); a final record
        releases it. So every run a replica has accepted and not finished is held by it,
        and found by :meth:`reap_lost` if that replica dies, whether the run had started
        or not. A run that :meth:`reap_lost` marked ``lost`` is fenced: any later write to
        it is refused, so an owner that wakes from a long pause cannot overwrite what its
        successors decided.

        :return: ``False`` when the write was refused because the run is ``lost``.
        :raises StoreError: on backend failure.
        """

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        """Save several records, in order; backends override this to batch.

        :return: the ids of the records refused (fenced), see :meth:`save_run`.
        """
        return [r.id for r in records if not await self.save_run(r)]

    @abstractmethod
    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        """The runs changed after change number ``after``: how ``/events`` follows the
        runs of every replica, and resumes where a client left off.

        Every write of a run record that the store accepts (:meth:`save_run`,
        :meth:`save_runs`, :meth:`reap_lost`; any status) gives the run a new change
        number: store-wide (every store object on the backend shares them), strictly
        increasing, and given in commit order, so once a reader has seen number ``n``
        every later write is numbered above ``n`` (gaps are allowed). A refused
        (fenced) write takes none.

        :return: up to ``limit`` runs whose latest change is numbered above ``after``,
            each once with its current record, by number (oldest change first); the
            highest number given so far; and the highest number of a run that retention
            deleted (:attr:`RunChanges.pruned`). Reading ``limit=0`` costs next to
            nothing (an index on the number): readers poll it.
        :raises StoreError: on backend failure.
        """

    @abstractmethod
    async def run_totals(self) -> list[RunTotals]:
        """The fleet's finished runs, by task and final status, since the store was made.

        A run is counted once, in the same transaction as the first write that makes it
        final (a final write repeated, or a refused one, adds nothing; a run
        :meth:`reap_lost` marks ``lost`` is counted as ``lost``), whichever store object
        made it; with its duration (start to finish, :meth:`RunTotals.seconds_of`) in
        the bucket :meth:`RunTotals.bucket_of` gives, when it has one. Retention
        leaves the totals alone: they only grow, so every replica reports the same
        monotonic counters.

        :return: one :class:`RunTotals` per ``(task, status)`` seen, in no set order.
        :raises StoreError: on backend failure.
        """

    @abstractmethod
    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        """Extend the leases ``replica`` holds on ``run_ids`` to store time + ``lease_ttl``.

        Called by every replica every ``lease_ttl / 3`` seconds for all its live runs
        (queued and waiting ones too: a run waiting for a slot, a dependency or a retry
        delay longer than the lease must not be reaped while its replica lives).

        :return: the ids whose lease ``replica`` no longer holds (reaped as ``lost``, or
            unknown): their attempt should stop, and their result will be refused.
        """

    @abstractmethod
    async def reap_lost(self) -> list[RunRecord]:
        """Mark every live run whose lease expired (in store time) ``lost``.

        Live means ``queued``, ``waiting`` or ``running``: the orphans of a replica that
        died are found whether they had started or not. A final run holds no lease and is
        never reaped. Its cost should not grow with history (index the live runs' lease
        expiry): every replica calls it every ``lease_ttl / 3`` seconds.

        Safe under concurrent replicas: each lost run is returned to exactly one caller,
        which decides whether to re-run it (``recover=True``).

        :return: the records as marked lost (status ``lost``, every other field as it was,
            reason ``"lost: its replica <owner> went silent past its lease"``).
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the record with ``run_id``, or ``None``."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Return run records, newest first (by ``scheduled_at``, then insertion).

        :param task: only this task's runs.
        :param statuses: only runs in one of these statuses.
        :param limit: at most this many records.
        :param offset: skip this many of the newest matches first (paging).
        """

    @abstractmethod
    async def load_task(self, task: str) -> TaskRecord | None:
        """Return the persisted state of ``task``, or ``None`` if never saved."""

    @abstractmethod
    async def save_task(self, task: str, record: TaskRecord) -> None:
        """Persist the progress of ``task`` (last fire, failure streak, alerting).

        ``state`` is written only when ``task`` has no stored record yet; afterwards only
        :meth:`change_task_state` changes it, so a replica saving its progress never
        undoes a pause another replica made meanwhile. ``consecutive_failures`` and
        ``alerting`` are replaced. ``last_fire`` never moves backwards: a backend keeps
        the later of the stored and the given value, because a claim may have advanced it
        concurrently. ``anchor`` is set once: a stored anchor is kept, whatever is given
        (first registration wins across replicas). ``definition`` is replaced when one is
        given, and kept when it is ``None`` (the latest registration wins).
        """

    @abstractmethod
    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        """Save ``record`` as :meth:`save_task` does, and its ``state`` too, as the
        latest change of that task's state (pause, resume, cancel) in the fleet.

        :return: the change's number. Numbers are store-wide and increase in the order
            the changes are made: once a caller has seen change ``n`` (here or through
            :meth:`task_state_changes`), every change made after it is numbered above
            ``n``, so no replica polling from ``n`` misses one. Changes are rare (people
            press buttons); a backend may serialise them.
        :raises StoreError: on backend failure (the state is then unchanged).
        """

    @abstractmethod
    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        """What changed since change ``after``: how replicas learn of each other's pauses.

        Every replica polls this about once a second (and when :meth:`wait_for_changes`
        returns), so it must cost next to nothing when nothing changed (an index on the
        change number).

        :return: the highest change number made so far (``after`` itself, or more), and
            the current state of every task changed by a change numbered above ``after``.
        """

    async def wait_for_changes(self, after: int, at_most: float) -> None:
        """Return soon after a change numbered above ``after`` may have been made by any
        replica, or after ``at_most`` seconds, whichever comes first.

        A hint that saves a replica waiting out its poll: a backend with notifications
        (PostgreSQL ``LISTEN``, Redis pub/sub) returns early, and may return early for no
        reason. This default sleeps ``at_most``: polling alone still brings every change.
        Never raises for a backend failure: the next poll reports it.
        """
        await anyio.sleep(at_most)

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        """The persisted state of each of ``tasks`` that has one (start-up reads them all).

        Backends override this to read in one round trip; by default it loops.
        """
        found = {}
        for task in tasks:
            record = await self.load_task(task)
            if record is not None:
                found[task] = record
        return found

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        """:meth:`save_task` for each item; backends override this to batch."""
        for task, record in records.items():
            await self.save_task(task, record)

    @abstractmethod
    async def add_audit(self, record: AuditRecord) -> None:
        """Append ``record`` to the audit trail of manual actions.

        Records are only ever added (retention aside): a record with an ``id`` already
        stored is not a case callers produce. Every field round-trips, ``at`` as an
        equal, aware UTC datetime and a ``None`` ``detail`` as ``None``.

        :raises StoreError: on backend failure (the record is then not stored).
        """

    @abstractmethod
    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        """Return audit records, newest first (by ``at``, then insertion, later first).

        :param task: only the records of actions on this task.
        :param limit: at most this many records.
        :param offset: skip this many of the newest matches first (paging).
        """


class Alerter(ABC):
    """Delivers alerts to people. Runs off the scheduler's path, under a timeout.

    ``send`` may take its time and may raise: the runtime bounds it with
    ``timeout`` seconds, logs failures, and never lets it delay a run.
    """

    #: Seconds one ``send`` may take before it is abandoned and logged.
    timeout: float = 30.0

    @abstractmethod
    async def send(self, alert: Alert) -> None:
        """Deliver one alert.

        :raises Exception: any failure; the runtime logs and counts it.
        """


class Executor(ABC):
    """Runs attempts of task bodies: where a task's work happens.

    The runtime calls :meth:`run` once per attempt, inside the attempt's cancel scope:
    a timeout, a cancel from the manager and shutdown all cancel that ``await``. The
    scheduler never starts more attempts on one executor than its :attr:`slots`.
    """

    #: What ``Task(executor=...)`` selects; unique among a scheduler's executors.
    name: str
    #: Attempts it runs at once (its pool's size); ``None``: only ``max_concurrency``.
    slots: int | None = None
    #: Whether cancelling :meth:`run` stops the work itself (``False`` for threads: the
    #: call goes on until it returns, only its result is dropped).
    interrupts: bool = True
    #: The task must name its function as an importable ``"module:function"`` string
    #: (a remote worker imports it) rather than being given a callable.
    needs_target: bool = False
    #: The run stays ``queued`` until the executor calls ``attempt.started(where)``
    #: (a remote worker picked it up); else it is ``running`` from dispatch.
    reports_start: bool = False

    async def open(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Connect or start pools. Called as the scheduler starts, before any run."""

    async def serve(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Background work for as long as the scheduler runs: one connection that hears
        every attempt's outcome, say, rather than one per attempt.

        Started in the scheduler's task group after :meth:`open`, before any run;
        cancelled once every run has ended (after the shutdown grace), before
        :meth:`close`. It should outlive the faults it can meet (a lost connection: retry
        with a backoff); should it raise, the error is logged and it is started again a
        second later.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what :meth:`open` took. Called as the scheduler stops, perhaps while
        an abandoned attempt still runs; idempotent."""

    def check(self, task: Task) -> None:  # noqa: B027 - optional hook, accepts every task
        """Refuse a task this executor cannot run, as it is added (its arguments cannot
        travel to a worker, say): raise :class:`xtasks.ConfigError` saying why and what
        to change. By default every task is accepted."""

    @abstractmethod
    async def run(self, attempt: Attempt) -> Any:
        """Run one attempt: return its result or raise its error (with its traceback:
        from a remote worker, see :func:`with_worker_traceback`).

        Must honour cancellation: when the ``await`` is cancelled, stop the work (or, if
        it cannot, :attr:`interrupts` is ``False``) and let the cancellation propagate.
        """


def with_worker_traceback(error: _E, traceback: str) -> _E:
    """Return ``error`` carrying ``traceback``, the formatted traceback from where the
    attempt really ran (a worker process, a remote worker): history shows it in place
    of the frames of the executor that raised ``error`` here.

    ``traceback`` is the text as Python formats it; its ``Traceback (most recent call
    last):`` heading may be left in.
    """
    frames = traceback.rstrip()
    heading = "Traceback (most recent call last):"
    frames = frames.removeprefix(heading).lstrip("\n")
    error.add_note(f"{WORKER_TRACEBACK}\n{frames}")
    return error
