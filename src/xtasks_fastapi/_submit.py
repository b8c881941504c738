"""A tracked ``submit`` for request handlers, in place of FastAPI's ``BackgroundTasks``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from fastapi import HTTPException, status

from xtasks import SchedulerStateError

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks import RunHandle, Scheduler, Task

__all__ = ["Submit", "tracked_submit"]


class Submit(Protocol):
    """``await submit(func_or_task, *args, **kwargs) -> RunHandle``: see :func:`tracked_submit`."""

    async def __call__(
        self, func: Callable[..., Any] | Task, /, *args: Any, **kwargs: Any
    ) -> RunHandle: ...


def _unavailable(detail: object) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"background work cannot be accepted: the task scheduler is not running ({detail}); "
        "retry once the application has started",
        headers={"Retry-After": "5"},
    )


def tracked_submit(scheduler: Scheduler) -> Callable[[], Submit]:
    """A FastAPI dependency handing a request handler ``scheduler.submit``.

    Unlike ``BackgroundTasks``, the work is a run of the scheduler: visible in history
    (trigger ``submit``, ``GET /manager/runs/{id}``), retried and timed out per the
    :class:`~xtasks.Task` given, limited by ``max_concurrency``, and recorded ``cancelled``
    rather than lost at shutdown. The handler gets the run's handle at once and may
    answer before the work starts. If the scheduler is not running, the request fails
    with 503 (before the handler runs) instead of a 500::

        from typing import Annotated
        from fastapi import Depends, FastAPI
        from xtasks import Scheduler, Task
        from xtasks_fastapi import Submit, tracked_submit

        scheduler = Scheduler()
        app = FastAPI(lifespan=scheduler.lifespan)
        Background = Annotated[Submit, Depends(tracked_submit(scheduler))]
        welcome = Task("welcome_mail", send_welcome_mail, max_retries=3, retry_delay=10)

        @app.post("/signup", status_code=202)
        async def signup(email: str, submit: Background) -> dict[str, str]:
            run = await submit(welcome, email)    # or submit(any_callable, *args)
            return {"run_id": run.id}
    """

    async def submit(func: Callable[..., Any] | Task, /, *args: Any, **kwargs: Any) -> RunHandle:
        try:
            return await scheduler.submit(func, *args, **kwargs)
        except SchedulerStateError as exc:  # stopped between the dependency and the call
            raise _unavailable(exc) from None

    def dependency() -> Submit:
        if not scheduler.running:
            raise _unavailable("it has not started or has stopped")
        return submit

    return dependency
