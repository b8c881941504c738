"""Every built-in executor passes the executor contract (``xtasks.testing``), on asyncio
and trio: result, error with its traceback, timeout, cancel, its slots at once, and
close while an attempt runs."""

from __future__ import annotations

import gc
import warnings
from typing import TYPE_CHECKING

import pytest

from xtasks._executors import AsyncExecutor, ProcessExecutor, ThreadExecutor
from xtasks.testing import EXECUTOR_CHECKS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from xtasks.abc import Executor

pytestmark = pytest.mark.anyio

BUILTINS: dict[str, tuple[Callable[[], Executor], bool]] = {
    "async": (AsyncExecutor, True),
    "sync": (lambda: ThreadExecutor(3), False),
    "process": (lambda: ProcessExecutor(2), False),
}


#: anyio (4.16) kills a worker process whose call is cancelled and leaves its pipes to the
#: garbage collector, which may get to them inside the test, on trio's run loop: that
#: warning (an unclosed pipe of a killed worker) is anyio's, not the contract's.
ANYIO_KILLED_WORKER_PIPES = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
)
EXECUTORS = [
    pytest.param(name, marks=ANYIO_KILLED_WORKER_PIPES) if name == "process" else name
    for name in BUILTINS
]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("check", EXECUTOR_CHECKS, ids=lambda check: check.__name__)
async def test_a_builtin_executor_passes_the_contract(
    executor: str, check: Callable[..., Awaitable[None]]
) -> None:
    factory, asynchronous = BUILTINS[executor]
    await check(factory, asynchronous=asynchronous)
    if executor == "process":
        _collect_killed_workers_pipes()


def _collect_killed_workers_pipes() -> None:
    """anyio (4.16) kills a worker process whose call is cancelled and leaves the pipes
    of some to the garbage collector, which warns (ResourceWarning) whenever it gets to
    them -- in whichever test runs then. Collected here, quietly: the leak is anyio's,
    bounded by the cancelled calls, and says nothing about the test that meets it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_every_public_executor_check_is_in_executor_checks() -> None:
    import xtasks.testing

    public = {
        getattr(xtasks.testing, name)
        for name in xtasks.testing.__all__
        if name.startswith("check_executor_")
    }
    assert public == set(EXECUTOR_CHECKS)
    assert all(check.__doc__ for check in EXECUTOR_CHECKS)
