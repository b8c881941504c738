"""The store contract as executable checks: what every :class:`xtasks.abc.Store` must do.

Modelled on trio's ``check_one_way_stream``. A backend's test suite either awaits
:func:`check_store` or parametrises over :data:`STORE_CHECKS`, so that each check is its
own test::

    import pytest
    from xtasks.testing import STORE_CHECKS

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda check: check.__name__)
    async def test_store_contract(check, tmp_path):
        async def make_store(*, lease_ttl: float) -> MyStore:
            return MyStore(f"mystore://{tmp_path}/db", lease_ttl=lease_ttl)

        await check(make_store)

``make_store`` returns a new, unopened store object at each call, on the same backend
(same URL or file), so two objects it returns behave as two replicas sharing data. Within
one check every object is made with the same ``lease_ttl``. An in-process backend may
return the same object each time, which is then opened and closed more than once.

Each check opens and closes the objects it makes. It uses task names and run ids of its
own, so a persistent backend needs no cleaning between checks, and runs left behind by an
earlier check do not break a later one. Lease checks sleep in real time a little beyond a
0.1 s ``lease_ttl``, because store time is real time. The whole suite takes about a second
per backend.

One module per topic: ``_records``, ``_claims``, ``_tasks``, ``_leases``, ``_history``,
``_errors``, ``_audit`` and ``_feed``; ``_support`` holds what they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._audit import check_audit_trail
from ._claims import check_claim_exclusivity, check_claim_fires, check_last_fire_monotonic
from ._errors import check_close_idempotent, check_errors_are_store_errors
from ._feed import check_run_changes, check_run_totals
from ._history import check_list_runs_order_and_paging, check_list_runs_task_change
from ._leases import (
    check_fencing,
    check_lease_expiry_and_reaping,
    check_lease_renewal,
    check_reap_live_runs,
)
from ._records import check_earlier_attempts, check_round_trip, check_run_executor_and_worker
from ._support import StoreFactory
from ._tasks import (
    check_task_batches_and_anchor,
    check_task_state_changes,
    check_task_state_round_trip,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "STORE_CHECKS",
    "StoreFactory",
    "check_audit_trail",
    "check_claim_exclusivity",
    "check_claim_fires",
    "check_close_idempotent",
    "check_earlier_attempts",
    "check_errors_are_store_errors",
    "check_fencing",
    "check_last_fire_monotonic",
    "check_lease_expiry_and_reaping",
    "check_lease_renewal",
    "check_list_runs_order_and_paging",
    "check_list_runs_task_change",
    "check_reap_live_runs",
    "check_round_trip",
    "check_run_changes",
    "check_run_executor_and_worker",
    "check_run_totals",
    "check_store",
    "check_task_batches_and_anchor",
    "check_task_state_changes",
    "check_task_state_round_trip",
]


#: Every check, in the order :func:`check_store` runs them.
STORE_CHECKS: Final[tuple[Callable[[StoreFactory], Awaitable[None]], ...]] = (
    check_round_trip,
    check_earlier_attempts,
    check_run_executor_and_worker,
    check_claim_exclusivity,
    check_claim_fires,
    check_last_fire_monotonic,
    check_task_state_round_trip,
    check_lease_expiry_and_reaping,
    check_task_batches_and_anchor,
    check_task_state_changes,
    check_reap_live_runs,
    check_fencing,
    check_lease_renewal,
    check_list_runs_order_and_paging,
    check_list_runs_task_change,
    check_audit_trail,
    check_run_changes,
    check_run_totals,
    check_close_idempotent,
    check_errors_are_store_errors,
)


async def check_store(make_store: StoreFactory) -> None:
    """Check a store backend against the :class:`~xtasks.abc.Store` contract.

    Runs every check of :data:`STORE_CHECKS` in order, each with fresh store objects
    from ``make_store``.

    :param make_store: ``async (*, lease_ttl: float) -> Store``, returning a new unopened
        store object on the backend under test at each call (see the module docstring).
    :raises AssertionError: at the first violation, naming the check and what differs.
    """
    for check in STORE_CHECKS:
        await check(make_store)
