"""The claim methods of a backend that claims a whole batch atomically (one transaction,
statement or script): either every fire of the batch got its answer, or none was made.

SQLite, PostgreSQL and Redis share them; each writes only :meth:`AtomicClaims._claim`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from .._errors import StoreError
from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["AtomicClaims"]


class AtomicClaims(Store):
    """A :class:`~xtasks.abc.Store` whose ``claim_fire`` and ``claim_fires`` are one
    atomic :meth:`_claim` of the batch (a single fire is a batch of one)."""

    @abstractmethod
    async def _claim(self, fires: Sequence[tuple[str, datetime]], replica: str) -> list[bool]:
        """Claim ``fires`` in one atomic step; whether each was won, in order.

        :raises StoreError: on backend failure: then none of them was claimed.
        """

    @abstractmethod
    def _check_open(self) -> object:
        """Raise :class:`StoreError` when the store is not open."""

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        [won] = await self._claim([(task, fire_time)], replica)
        return won

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        if not fires:
            self._check_open()
            return []
        try:
            return list(await self._claim(fires, replica))
        except StoreError as exc:  # one atomic step: none of them was claimed
            return [exc] * len(fires)
