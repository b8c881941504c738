"""Tests whose subject is a duration run in virtual time, so it is asserted exactly."""

from __future__ import annotations

import pytest
import trio.testing


def in_virtual_time() -> pytest.MarkDecorator:
    """Run the test on trio with a fresh ``MockClock`` that jumps to the next deadline
    whenever every task waits: each sleep takes exactly its time, whatever the load.
    The test takes an ``anyio_backend`` argument."""
    return pytest.mark.parametrize(
        "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
    )
