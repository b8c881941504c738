"""A Hypothesis state machine that runs a store backend side by side with ``MemoryStore``.

Needs Hypothesis, a test dependency: ``xtasks.testing`` imports this module only when
``StoreMachine`` is first used.
"""

from __future__ import annotations

import functools
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import anyio.from_thread
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .._runs import (
    AuditRecord,
    ErrorInfo,
    RunCause,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
)
from ..stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Collection

    from anyio.from_thread import BlockingPortal

    from ..abc import Store

__all__ = ["StoreMachine"]

_T0: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: Small pools, so that claims collide, records are replaced and times tie.
_TASKS: Final = ("alpha", "beta", "gamma")
_FIRES: Final = tuple(_T0 + timedelta(seconds=s) for s in (0, 0.5, 1, 60, 3600.000001))
_RUN_IDS: Final = tuple(f"run-{i}" for i in range(7))
_REPLICAS: Final = ("replica-a", "replica-b")
#: Never ``lost``: only ``reap_lost`` makes a run lost; what a store does with a lost
#: record written directly is not specified.
_SAVED_STATUSES: Final = tuple(status for status in RunStatus if status is not RunStatus.LOST)


def _by_id(record: RunRecord) -> str:
    return record.id


class _StoreTime:
    """The machine's store time: seconds that only its rules move."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _task_of(run_id: str) -> str:
    """Each run id keeps one task: the stores need not agree on runs that change task."""
    return _TASKS[int(run_id.rsplit("-", 1)[1]) % len(_TASKS)]


_text = st.text(max_size=12)
_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - Hypothesis takes naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
_times = st.sampled_from(_FIRES) | _datetimes
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=6,
)


@st.composite
def _run_records(draw: st.DrawFn) -> RunRecord:
    run_id = draw(st.sampled_from(_RUN_IDS))
    return RunRecord(
        id=run_id,
        task=_task_of(run_id),
        status=draw(st.sampled_from(_SAVED_STATUSES)),
        cause=draw(st.sampled_from(RunCause)),
        scheduled_at=draw(_times),
        started_at=draw(st.none() | _times),
        finished_at=draw(st.none() | _times),
        attempts=draw(st.integers(min_value=0, max_value=20)),
        error=draw(st.none() | st.builds(ErrorInfo, _text, _text, _text)),
        reason=draw(st.none() | _text),
        result=draw(_json),
        replica=draw(st.sampled_from(_REPLICAS) | _text),
    )


_task_records = st.builds(
    TaskRecord,
    state=st.sampled_from(TaskState),
    last_fire=st.none() | st.sampled_from(_FIRES) | _datetimes,
    consecutive_failures=st.integers(min_value=0, max_value=100),
    alerting=st.booleans(),
    definition=st.none() | st.sampled_from(["app:f, Every(seconds=5)", "app:g, on demand"]),
)
_tasks = st.sampled_from(_TASKS)
_LIVE: Final = (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING)
#: Steps of store time: within a lease, to its edge and just past it, well past it.
_STEPS: Final = (0.0, 1.0, 5.0, 9.999, 10.0, 10.001, 25.0)
_ACTIONS: Final = ("run", "pause", "resume", "cancel")
_OUTCOMES: Final = ("ok", "refused", "failed")


class StoreMachine(RuleBasedStateMachine):
    """Run a backend and :class:`~xtasks.stores.memory.MemoryStore` (the model) side by side.

    Each step makes the same call on both stores; they must return equal results, and
    after every step list the same runs and load the same task states. A fire is never
    claimed twice. The rules claim fires from a small pool (one by one and in batches),
    save runs one by one or in batches (any status but ``lost``, random fields, ids from
    a small pool so that records are replaced), read runs back, list them with random
    filters and pages, save and load task states, and add and list audit records (times
    tie often).

    Leases: when :attr:`store_time` is true, both stores read the machine's own store
    time (:attr:`clock`, a callable of seconds that only the rules move), and the rules
    also save live runs of the replicas, let time pass (to a lease's edge, just past it,
    well past it), renew leases for a replica and reap lost runs. The
    stores must agree on which runs are held and which are reaped (every live run holds
    its replica's lease: queued, waiting and running ones, never a final one), and every
    run reaped must have been live, come back ``lost`` with its other fields unchanged and
    a reason naming its replica. Writes to a reaped run must then be refused by both.
    A backend whose store time cannot be injected (a server's clock) leaves
    :attr:`store_time` false; the real-time checks, :func:`~xtasks.testing.check_lease_renewal`
    and its siblings, cover its leases.

    Subclass it, define :meth:`make_store`, and expose its ``TestCase`` to pytest::

        class SQLiteMachine(StoreMachine):
            store_time = True

            def make_store(self) -> Store:
                path = make_a_temporary_path()
                return SQLiteStore(path, lease_ttl=self.lease_ttl, clock=self.clock)

        TestSQLiteStore = SQLiteMachine.TestCase

    Hypothesis drives machines synchronously: the async calls go through an anyio
    blocking portal (an event loop in a thread) that each machine opens when it is made
    and closes in :meth:`teardown`, after closing both stores.
    """

    #: The event loop the portal runs: ``"asyncio"`` or ``"trio"``.
    anyio_backend: ClassVar[str] = "asyncio"
    #: Whether :meth:`make_store` builds the backend on :attr:`clock` for its store time
    #: and :attr:`lease_ttl` for its leases; the lease rules run only then.
    store_time: ClassVar[bool] = False
    #: Seconds of store time a lease lasts, in both stores.
    lease_ttl: ClassVar[float] = 10.0

    def make_store(self) -> Store:
        """Return a new, unopened, empty store of the backend under test.

        Called once per example (each Hypothesis example is a fresh machine), so each
        example starts empty: for a file-backed store, a new file. With
        :attr:`store_time`, build it on ``clock=self.clock`` and ``self.lease_ttl``.
        """
        raise NotImplementedError("define make_store() in a subclass of StoreMachine")

    def __init__(self) -> None:
        super().__init__()
        self.claims: Counter[tuple[str, datetime]] = Counter()  #: wins per fire, by backend
        self.audits = 0  #: audit records added: their ids are unique, as callers make them
        #: The number each state change got: (backend's, model's), oldest first.
        self.changes: list[tuple[int, int]] = []
        #: Store time, in seconds: what both stores read for leases when ``store_time``.
        self.clock = _StoreTime()
        self._exit = ExitStack()
        try:
            self.portal: BlockingPortal = self._exit.enter_context(
                anyio.from_thread.start_blocking_portal(self.anyio_backend)
            )
            self.model: Store = MemoryStore(lease_ttl=self.lease_ttl, clock=self.clock)
            self.store: Store = self.make_store()
            for store in (self.model, self.store):
                self.portal.call(store.open)
                self._exit.callback(self.portal.call, store.close)
        except BaseException:
            self._exit.close()
            raise

    def teardown(self) -> None:
        """Close both stores, then the portal."""
        self._exit.close()

    def _both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Call ``method`` on the backend, then on the model; return both results."""
        got = self.portal.call(functools.partial(getattr(self.store, method), *args, **kwargs))
        want = self.portal.call(functools.partial(getattr(self.model, method), *args, **kwargs))
        return got, want

    def _agree(self, method: str, *args: Any, **kwargs: Any) -> Any:
        got, want = self._both(method, *args, **kwargs)
        if got != want:
            call = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            raise AssertionError(
                f"{method}({call}): the backend returned\n  {got!r}\nthe model\n  {want!r}"
            )
        return got

    @rule(task=_tasks, fire=st.sampled_from(_FIRES), replica=st.sampled_from(_REPLICAS))
    def claim_fire(self, task: str, fire: datetime, replica: str) -> None:
        if self._agree("claim_fire", task, fire, replica):
            self.claims[task, fire] += 1

    @rule(
        fires=st.lists(st.tuples(_tasks, st.sampled_from(_FIRES)), max_size=4),
        replica=st.sampled_from(_REPLICAS),
    )
    def claim_fires(self, fires: list[tuple[str, datetime]], replica: str) -> None:
        for fire, won in zip(fires, self._agree("claim_fires", fires, replica), strict=True):
            if won is True:
                self.claims[fire] += 1

    @rule(record=_run_records())
    def save_run(self, record: RunRecord) -> None:
        self._agree("save_run", record)

    @rule(records=st.lists(_run_records(), max_size=4))
    def save_runs(self, records: list[RunRecord]) -> None:
        self._agree("save_runs", records)

    @rule(run_id=st.sampled_from(_RUN_IDS) | st.just("run-unknown"))
    def get_run(self, run_id: str) -> None:
        self._agree("get_run", run_id)

    @rule(
        task=st.none() | _tasks | st.just("unknown"),
        statuses=st.none() | st.frozensets(st.sampled_from(RunStatus), max_size=4),
        limit=st.integers(min_value=0, max_value=8),
        offset=st.integers(min_value=0, max_value=8),
    )
    def list_runs(
        self, task: str | None, statuses: Collection[RunStatus] | None, limit: int, offset: int
    ) -> None:
        self._agree("list_runs", task=task, statuses=statuses, limit=limit, offset=offset)

    @rule(task=_tasks, record=_task_records)
    def save_task(self, task: str, record: TaskRecord) -> None:
        self._agree("save_task", task, record)

    @rule(task=_tasks | st.just("unknown"))
    def load_task(self, task: str) -> None:
        self._agree("load_task", task)

    @rule(task=_tasks, record=_task_records)
    def change_task_state(self, task: str, record: TaskRecord) -> None:
        got, want = self._both("change_task_state", task, record)
        if self.changes and got <= self.changes[-1][0]:
            raise AssertionError(f"change_task_state returned {got}, after {self.changes[-1][0]}")
        self.changes.append((got, want))

    @rule(data=st.data())
    def task_state_changes(self, data: st.DataObject) -> None:
        """Polled from any change seen (or before all): the same tasks and states.

        The backend's numbers need not equal the model's, only keep their order.
        """
        seen = [(0, 0), *self.changes]
        after_got, after_want = data.draw(st.sampled_from(seen), label="after")
        (latest_got, got), (latest_want, want) = (
            self.portal.call(self.store.task_state_changes, after_got),
            self.portal.call(self.model.task_state_changes, after_want),
        )
        if got != want or (latest_got, latest_want) != seen[-1]:
            raise AssertionError(
                f"task_state_changes({after_got}): the backend returned {(latest_got, got)}, "
                f"the model {(latest_want, want)}; the latest change is numbered {seen[-1]}"
            )

    @rule(
        at=_times,
        actor=_text,
        action=st.sampled_from(_ACTIONS),
        task=_tasks,
        outcome=st.sampled_from(_OUTCOMES),
        detail=st.none() | _text,
    )
    def add_audit(
        self, at: datetime, actor: str, action: str, task: str, outcome: str, detail: str | None
    ) -> None:
        self.audits += 1
        record = AuditRecord(
            id=f"audit-{self.audits}",
            at=at,
            actor=actor,
            action=action,
            task=task,
            outcome=outcome,
            detail=detail,
        )
        self._agree("add_audit", record)

    @rule(
        task=st.none() | _tasks | st.just("unknown"),
        limit=st.integers(min_value=0, max_value=8),
        offset=st.integers(min_value=0, max_value=8),
    )
    def list_audit(self, task: str | None, limit: int, offset: int) -> None:
        self._agree("list_audit", task=task, limit=limit, offset=offset)

    @precondition(lambda self: self.store_time)
    @rule(
        record=_run_records(),
        status=st.sampled_from(_LIVE),
        replica=st.sampled_from(_REPLICAS),
    )
    def save_live_run(self, record: RunRecord, status: RunStatus, replica: str) -> None:
        """A live run of one of the replicas that renew: what leases are about."""
        self._agree("save_run", record.evolve(status=status, replica=replica))

    @precondition(lambda self: self.store_time)
    @rule(seconds=st.sampled_from(_STEPS))
    def pass_time(self, seconds: float) -> None:
        self.clock.now += seconds

    @precondition(lambda self: self.store_time)
    @rule(
        replica=st.sampled_from(_REPLICAS),
        run_ids=st.lists(st.sampled_from((*_RUN_IDS, "run-unknown")), max_size=4),
    )
    def renew_leases(self, replica: str, run_ids: list[str]) -> None:
        self._agree("renew_leases", replica, run_ids)

    @precondition(lambda self: self.store_time)
    @rule(seconds=st.sampled_from(_STEPS))
    def reap_lost(self, seconds: float) -> None:
        """Let ``seconds`` pass, then reap (time passing is what reaping needs)."""
        self.clock.now += seconds
        before = {run_id: self.portal.call(self.model.get_run, run_id) for run_id in _RUN_IDS}
        got, want = self._both("reap_lost")
        got, want = sorted(got, key=_by_id), sorted(want, key=_by_id)
        if got != want:
            raise AssertionError(
                f"reap_lost(): the backend reaped\n  {got!r}\nthe model\n  {want!r}"
            )
        for record in got:
            old = before.get(record.id)
            if old is None or old.status.is_final:
                raise AssertionError(f"reap_lost() reaped a run that was not live: {old!r}")
            expected = old.evolve(status=RunStatus.LOST, reason=record.reason)
            if record != expected or old.replica not in (record.reason or ""):
                raise AssertionError(
                    f"reap_lost() returned\n  {record!r}\nfor the live run\n  {old!r}: "
                    "it must be lost, with a reason naming its replica, all else unchanged"
                )

    @invariant()
    def stores_agree(self) -> None:
        """Both list the same runs and audit records, in the same order, and hold the
        same task states."""
        self._agree("list_runs", limit=len(_RUN_IDS) + 1)
        self._agree("list_audit", limit=self.audits + 1)
        for task in _TASKS:
            self._agree("load_task", task)

    @invariant()
    def no_fire_claimed_twice(self) -> None:
        twice = sorted(fire for fire, wins in self.claims.items() if wins > 1)
        if twice:
            raise AssertionError(f"fires claimed more than once: {twice}")
