"""The claimer: due fires are claimed in the store apart from the timer, in batches.

The timer loop never waits for the store; it hands each due fire here, and what came due
while a claim was in flight is claimed in one call (``Store.claim_fires``: one transaction
on SQLite). A claim won goes back to the planner. While claims fail (or more records wait
to be written than :data:`MAX_BACKLOG`), the claimer stops asking the store for a while
(backoff up to :data:`_MAX_CLAIM_RETRY`) and remembers the fires it could not claim, one
range per task; once the store claims again, each range is recorded ``missed``, naming
why. A fire is run or recorded, never dropped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from ._decisions import ClaimFire
from ._errors import StoreError
from ._runs import RunCause

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ._recorder import Recorder
    from .abc import Store

__all__ = ["MAX_BACKLOG", "Claimer"]

_log = logging.getLogger("xtasks")

#: Records waiting to be written beyond which no new fire is claimed (they are recorded
#: missed once the store writes again).
MAX_BACKLOG: Final = 10_000
_FIRST_CLAIM_RETRY: Final = 0.5
_MAX_CLAIM_RETRY: Final = 10.0


@final
class Claimer:
    """Claims due fires for one replica; ``won(claim)`` hands a won claim to the planner."""

    def __init__(
        self, store: Store, replica: str, recorder: Recorder, won: Callable[[ClaimFire], object]
    ) -> None:
        self._store = store
        self._replica = replica
        self._recorder = recorder
        self._won = won
        self._claims: list[ClaimFire] = []
        self._claim_wakeup = anyio.Event()
        #: Fires not claimed because the store failed, by task: recorded missed later.
        self._unclaimed: dict[str, _Unclaimed] = {}
        self._claims_down_until = -math.inf  # anyio time: no claim is tried before it
        self._claim_backoff = _FIRST_CLAIM_RETRY
        self._claim_scope = anyio.CancelScope()
        #: Records waiting to be written beyond which no new fire is claimed.
        self.max_backlog = MAX_BACKLOG
        #: Why claims fail, while they do, and the recorder's ``writes_ok`` then (for
        #: health: a write that succeeds later ends the outage too); ``None`` once they work.
        self.claim_error: tuple[str, int] | None = None

    def add(self, claim: ClaimFire) -> None:
        """A fire came due: claim it soon."""
        self._claims.append(claim)
        self._claim_wakeup.set()

    def stop(self) -> None:
        """Stop claiming (fires not claimed yet are the next start's catch-up)."""
        self._claim_scope.cancel()

    @property
    def unclaimed(self) -> int:
        """Due fires the store could not claim, waiting to be recorded missed."""
        return sum(held.count for held in self._unclaimed.values())

    async def run(self) -> None:
        """Claim due fires in the store, in the order they came due."""
        with self._claim_scope:
            while True:
                if self._unclaimed:  # come back to record them once the store works
                    with anyio.move_on_after(self._pause()):
                        await self._claim_wakeup.wait()
                else:
                    await self._claim_wakeup.wait()
                self._claim_wakeup = anyio.Event()
                while self._claims:
                    claims, self._claims = self._claims, []
                    await self._claim(claims)
                if self._unclaimed and self._can_claim():
                    await self._record_unclaimed()

    def _pause(self) -> float:
        """Seconds until the unclaimed fires are tried again: until the pause the last
        failed claim set is over; else (too many records wait to be written) a short one."""
        left = self._claims_down_until - anyio.current_time()
        return left if left > 0 else _FIRST_CLAIM_RETRY

    def _can_claim(self) -> bool:
        """Whether to ask the store for claims now: not while claims fail (until the next
        try), nor while more records wait to be written than :attr:`max_backlog`."""
        down_until = self._claims_down_until
        if down_until != -math.inf and anyio.current_time() < down_until:
            return False  # the clock is read only while claims fail: not on every claim
        return self._recorder.backlog < self.max_backlog

    async def _claim(self, claims: list[ClaimFire]) -> None:
        """Claim what came due meanwhile, in one call to the store, in order."""
        if not self._can_claim():
            why = self._why_not_claimed()
            for claim in claims:
                self._not_claimed(claim, why)
            return
        fires = [(claim.task, claim.fire_time) for claim in claims]
        try:
            outcomes = await self._store.claim_fires(fires, self._replica)
        except StoreError as exc:  # a backend of someone else's may raise it instead
            outcomes = [exc] * len(fires)
        failure: StoreError | None = None
        for claim, outcome in zip(claims, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                failure = outcome
                self._not_claimed(claim, f"the store could not claim it: {outcome}")
            elif outcome:
                self._won(claim)
            else:
                _log.debug(
                    "fire %s of task %r was claimed by another replica",
                    claim.fire_time.isoformat(),
                    claim.task,
                )
        if failure is None:
            self._claim_backoff = _FIRST_CLAIM_RETRY
        else:
            self._claim_failed(failure)

    def _why_not_claimed(self) -> str:
        """Why a fire due now is held, in the words its ``missed`` record will give."""
        health = self._recorder.health
        if health.backlog >= self.max_backlog:
            why = f"{health.backlog} records waited to be written"
            return why + (f" (the store failed: {health.last_error})" if health.last_error else "")
        claims = self.claim_error[0] if self.claim_error is not None else "claims failed"
        return f"the store failed: {health.last_error or claims}"

    def _claim_failed(self, exc: StoreError) -> None:
        if self._claims_down_until == -math.inf:
            _log.warning(
                "the store cannot claim fires (%s); fires due meanwhile are recorded missed "
                "once it can",
                exc,
            )
        self.claim_error = (str(exc), self._recorder.writes_ok)
        self._claims_down_until = anyio.current_time() + self._claim_backoff
        self._claim_backoff = min(self._claim_backoff * 2, _MAX_CLAIM_RETRY)

    def _not_claimed(self, claim: ClaimFire, why: str) -> None:
        """Remember a fire the store could not claim: one range per task."""
        count = max(claim.missed, 1)
        last = claim.missed_until or claim.fire_time
        held = self._unclaimed.get(claim.task)
        if held is None:
            self._unclaimed[claim.task] = _Unclaimed(claim.fire_time, last, count, why)
        else:
            held.last = max(held.last, last)
            held.count += count

    async def _record_unclaimed(self) -> None:
        """The store may work again: claim each task's first unclaimed fire, and record
        the range ``missed``, naming why (another replica may have claimed it: then it
        ran or was recorded there)."""
        for task, held in list(self._unclaimed.items()):
            try:
                won = await self._store.claim_fire(task, held.first, self._replica)
            except StoreError as exc:
                self._claim_failed(exc)
                return
            del self._unclaimed[task]
            if won:
                claim = ClaimFire(
                    task,
                    held.first,
                    RunCause.SCHEDULE,
                    held.count,
                    held.last,
                    missed_because=f"not claimed: {held.why}",
                )
                self._won(claim)
        if self._claims_down_until != -math.inf:
            _log.warning("the store claims fires again")
            self._claims_down_until = -math.inf
            self.claim_error = None
            self._claim_backoff = _FIRST_CLAIM_RETRY


@dataclass(slots=True)
class _Unclaimed:
    """Fires of one task the store could not claim: from ``first`` to ``last``."""

    first: datetime
    last: datetime
    count: int
    why: str
