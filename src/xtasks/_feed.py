"""The fleet's record of run changes and run totals, as a store keeps them.

Every write of a run record gets a store-wide change number, so a reader (the manager's
``/events``) can follow every replica's runs from the store and resume where it left
off; and every run's first final write adds it to the fleet's totals (counts by task and
final status, durations in histogram buckets), so any replica answers ``/metrics`` for
the whole fleet.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:
    from ._runs import RunRecord, RunStatus

__all__ = [
    "DURATION_BUCKETS",
    "RunChanges",
    "RunTotals",
    "TotalsBatch",
    "duration_bucket",
    "run_seconds",
]

#: Upper bounds, in seconds, of the run-duration histogram's buckets (Prometheus' ``le``);
#: one more bucket, ``+Inf``, follows them. Fixed: totals stored by one version of xtasks
#: are read by the next.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def run_seconds(record: RunRecord) -> float | None:
    """How long ``record`` ran (start to finish, never negative); ``None`` if it never
    started or has not finished."""
    if record.started_at is None or record.finished_at is None:
        return None
    return max((record.finished_at - record.started_at).total_seconds(), 0.0)


def duration_bucket(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in: the first bound at or above it, or
    ``len(DURATION_BUCKETS)`` (``+Inf``)."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


@dataclass(frozen=True, slots=True)
class RunChanges:
    """What :meth:`xtasks.abc.Store.run_changes` answers.

    ``changes`` holds each run changed after the number asked for, once, with its
    current record and the number of its latest change, oldest change first. A run that
    changed twice since shows only its latest state: a reader sees every run that
    changed and where it stands, not every step it took.
    """

    #: The highest change number the store has given (to any run, by any replica).
    latest: int
    #: Retention deleted runs whose latest change was numbered up to this: a reader that
    #: last saw a number below it may hold runs the store no longer has, and should
    #: reload from :meth:`~xtasks.abc.Store.list_runs`.
    pruned: int
    #: ``(number, record)`` pairs, numbers strictly increasing.
    changes: tuple[tuple[int, RunRecord], ...]

    def complete_after(self, after: int) -> bool:
        """Whether these changes, read after ``after``, miss nothing: ``after`` is
        neither older than what retention kept nor newer than the store's latest (a
        number from another store, or from before the store was wiped)."""
        return self.pruned <= after <= self.latest


@dataclass(frozen=True, slots=True)
class RunTotals:
    """The fleet's finished runs of one task with one final status, since the store was
    created: what :meth:`xtasks.abc.Store.run_totals` answers, one per pair.

    Each run counts once, at its first final write, whichever replica made it; retention
    does not lower the totals.
    """

    task: str
    status: RunStatus
    #: Runs that ended with ``status``.
    runs: int
    #: Those of them that started and finished (``started_at`` and ``finished_at`` set):
    #: the ones with a duration.
    timed: int
    #: Their durations added up, in seconds.
    seconds: float
    #: How many of the timed runs fell in each bucket of :data:`DURATION_BUCKETS`, and
    #: ``+Inf`` last (not cumulative): ``len(DURATION_BUCKETS) + 1`` counts summing to
    #: ``timed``.
    buckets: tuple[int, ...]

    #: The buckets' upper bounds, :data:`DURATION_BUCKETS`.
    BOUNDS: ClassVar[tuple[float, ...]] = DURATION_BUCKETS

    @staticmethod
    def seconds_of(record: RunRecord) -> float | None:
        """How long ``record`` ran, as the totals count it (see :func:`run_seconds`)."""
        return run_seconds(record)

    @staticmethod
    def bucket_of(seconds: float) -> int:
        """The bucket ``seconds`` falls in (see :func:`duration_bucket`)."""
        return duration_bucket(seconds)


class TotalsBatch:
    """The additions one write makes to the stored totals, summed by ``(task, status)``.

    A backend adds each record its write makes final for the first time, then adds
    :meth:`rows` to its totals in the same transaction.
    """

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], list[Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._sums)

    def add(self, record: RunRecord) -> None:
        """Count the final ``record``."""
        key = (record.task, str(record.status))
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = [0, 0, 0.0, *([0] * (len(DURATION_BUCKETS) + 1))]
        sums[0] += 1
        seconds = run_seconds(record)
        if seconds is not None:
            sums[1] += 1
            sums[2] += seconds
            sums[3 + duration_bucket(seconds)] += 1

    def rows(self) -> list[tuple[Any, ...]]:
        """``(task, status, runs, timed, seconds, bucket_0, ..., bucket_inf)`` each."""
        return [(task, status, *sums) for (task, status), sums in self._sums.items()]
