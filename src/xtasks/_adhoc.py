"""The Tasks that ``submit`` runs plain callables as, and the argument checks of a run.

A submission of a plain callable runs as a :class:`Task` named after it; building a
Task validates and inspects the callable, so it is built once per callable and reused
(the cache is bounded: it is cleared when full). The arguments of each submission, and
of ``Scheduler.run``, are checked against the signature before anything is queued, so
a wrong call fails in the caller, not later in a worker.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any, final

from ._errors import ConfigError
from ._task import Task

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AdhocTasks", "check_bind", "signature"]

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")
_CACHE_SIZE = 512


def signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """``func``'s signature, or ``None`` when it has none to inspect (some builtins)."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def check_bind(
    name: str, sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """:raises ConfigError: naming the task ``name``, when the arguments do not fit."""
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"the arguments do not fit {name}{sig}: {exc}", task=name, field="args"
        ) from None


@final
class AdhocTasks:
    """The Task each submitted callable runs as, built once and then reused."""

    def __init__(self) -> None:
        self._cache: dict[Any, tuple[Task, inspect.Signature | None]] = {}

    def task_for(
        self, func: Callable[..., Any] | Task, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Task:
        """The Task a submission of ``func(*args, **kwargs)`` runs as; arguments checked."""
        if isinstance(func, Task):
            if args or kwargs:
                check_bind(func.name, signature(func.func), args, kwargs)
            return func
        cached = self._cache.get(func)
        if cached is not None:
            task, sig = cached
            if args or kwargs or task.args or task.kwargs:  # () was bound at construction
                check_bind(task.name, sig, args, kwargs)
            return task
        target = f"{getattr(func, '__module__', None) or 'submit'}:" + getattr(
            func, "__qualname__", type(func).__qualname__
        )
        name = _UNSAFE_NAME_CHARS.sub("_", target)[:200]
        task = Task(name, func, args=args, kwargs=kwargs)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[func] = (task, signature(func))
        return task
