"""What a task calls, checked once at ``Task(...)``: whether a function binds its
arguments, whether it is async, whether a worker process can import it again, and the
stand-in for a function only a remote executor imports. Errors name the task and key."""

from __future__ import annotations

import inspect
import sys
from functools import partial
from types import FunctionType
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard, final

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "RemoteFunction",
    "bad",
    "check_bind",
    "check_importable",
    "fail",
    "is_async_callable",
    "is_plain",
    "plain_shape",
]


@final
class RemoteFunction:
    """Stands for a function named by a string that this process did not import: the
    workers of a remote executor (``Task(executor="celery")``) find it by that name.

    Called here, it says so: only a remote executor runs such a task.
    """

    __slots__ = ("name", "reason")

    def __init__(self, name: str, reason: str) -> None:
        self.name = name  #: the string the task gave
        self.reason = reason  #: why it was not imported here

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        msg = f"{self.name!r} is not imported in this process ({self.reason}): only a "
        raise ConfigError(msg + "remote executor (one that imports by name) can run it")

    def __repr__(self) -> str:
        return f"<remote function {self.name!r}>"


def fail(task: str | None, key: str, message: str) -> NoReturn:
    raise ConfigError(message, task=task, field=key)


def bad(task: str, key: str, rule: str, value: object) -> NoReturn:
    fail(task, key, f"{key} {rule}; got {value!r} ({type(value).__name__})")


def is_plain(func: object) -> TypeGuard[FunctionType]:
    """A Python function whose code tells its signature and its kind: nothing in its
    ``__dict__`` (``__wrapped__``, ``__signature__``, a coroutine mark) says otherwise."""
    return func.__class__ is FunctionType and not func.__dict__


def plain_shape(func: object) -> tuple[bool, bool] | None:
    """For a plain function, read off its code: whether ``func()`` binds, and whether it
    is async. The common case costs a few attribute reads, not an ``inspect.Signature``.
    None for any other callable: ask ``inspect``."""
    if not is_plain(func):
        return None
    code, defaults = func.__code__, func.__defaults__ or ()
    binds = code.co_argcount == len(defaults) and code.co_kwonlyargcount == len(
        func.__kwdefaults__ or ()
    )
    return binds, bool(code.co_flags & inspect.CO_COROUTINE)


def check_bind(func: Callable[..., Any], target: str, task: str, /, *args: Any, **kw: Any) -> None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return  # some builtins and C callables have no inspectable signature
    try:
        signature.bind(*args, **kw)
    except TypeError as exc:
        bare = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
        shown = signature.replace(parameters=bare, return_annotation=signature.empty)
        msg = f"args={args!r} kwargs={kw!r} do not fit {target}{shown}: {exc}"
        fail(task, "kwargs" if "keyword" in str(exc) else "args", msg + "; fix the arguments")


def is_async_callable(func: object) -> bool:
    """True for coroutine functions, partials of them and instances with ``async __call__``."""
    while isinstance(func, partial):
        func = func.func
    if is_plain(func):
        return bool(func.__code__.co_flags & inspect.CO_COROUTINE)
    if inspect.iscoroutinefunction(func):  # knows inspect.markcoroutinefunction (3.12+)
        return True
    if inspect.isroutine(func) or inspect.isclass(func):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(func, "__call__", None))


def check_importable(func: Callable[..., Any], target: str, task: str) -> None:
    """A process pool pickles functions by reference: module + qualname must find it again."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    problem = ""
    if not isinstance(module, str) or not isinstance(qualname, str):
        problem = "has no module-level name (a partial, an instance or a bound builtin)"
    elif "<locals>" in qualname or "<lambda>" in qualname:
        problem = "is a lambda or is defined inside a function"
    else:
        obj: Any = sys.modules.get(module)  # a live function's module is already imported
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is not func and obj != func:
            problem = f"cannot be found again as {module}:{qualname}"
    if problem:
        msg = f"mode 'process' needs a function a worker process can import, but {target}"
        fail(task, "mode", f"{msg} {problem}; move it to module level or use mode='sync'")
