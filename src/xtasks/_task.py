"""The task specification: an immutable, validated description of what to run and how.

Everything a user can get wrong is checked once, in ``Task.__init__``, so the planner
and the runtime read plain canonical values (enums, floats, tuples) and never re-validate.
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
import re
import sys
from dataclasses import KW_ONLY, dataclass, field
from enum import Enum, StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn, Self, final

from ._errors import ConfigError, _did_you_mean
from ._frozen import writable_twin
from ._task_func import (
    RemoteFunction,
    bad,
    check_bind,
    check_importable,
    fail,
    is_async_callable,
    plain_shape,
)
from ._task_values import (
    NAME_PATTERN,
    NAME_RE,
    NO_KWARGS,
    args_tuple,
    depends_on_names,
    kwargs_mapping,
    plain_options,
    strings,
)
from ._triggers import At, Cron, Every, Trigger, warn_short_interval

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import timedelta

__all__ = ["CatchUp", "Mode", "Overlap", "Priority", "Task"]

_EXECUTOR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
_UNSET: Any = None  # the declared default of fields that __init__ computes (mode, kwargs)
_MISSING: Any = object()  # name or func not given: a TypeError, once the options are checked
_NO_TAGS: frozenset[str] = frozenset()
_put = object.__setattr__  # the one way to set a field of a frozen dataclass


class _Choice(StrEnum):
    """A closed set of lowercase strings (``str`` and ``Enum``), parsed case-insensitively.

    Every member's value is its lowercased name, so a name lookup also finds aliases.
    """

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        return cls.__members__.get(value.strip().upper()) if isinstance(value, str) else None

    @classmethod
    def parse(cls, value: object, *, task: str | None = None, field: str | None = None) -> Self:
        """Return the member for ``value`` (a member, or a name or alias in any case).

        :raises ConfigError: naming the value received and every accepted spelling.
        """
        if (found := cls._missing_(value)) is not None:
            return found
        key = field or re.sub(r"(?<!^)([A-Z])", r"_\1", cls.__name__).lower()  # CatchUp: catch_up
        accepted = ", ".join(repr(name.lower()) for name in cls.__members__)
        fail(task, key, f"{key} must be one of {accepted} (any case); got {value!r}")


_RANKS = {"high": 0, "normal": 1, "low": 2}


class Priority(_Choice):
    """Which ready run takes a free slot first."""

    HIGH = "high"
    """Starts before every ready normal or low run."""
    NORMAL = "normal"
    """The default."""
    LOW = "low"
    """Starts only when no high or normal run is waiting for the same kind of slot."""
    HAUTE = "high"  # French aliases: Priority.HAUTE is Priority.HIGH
    NORMALE = "normal"
    BASSE = "low"

    @property
    def rank(self) -> int:
        """Sort key for the ready queue: 0 for high, 1 for normal, 2 for low (lower first)."""
        return _RANKS[self]  # by member, not .value: read for every run that queues


class Mode(_Choice):
    """Where a run executes; inferred from the callable when not given."""

    ASYNC = "async"
    """Awaited on the scheduler's event loop (``async def`` callables)."""
    SYNC = "sync"
    """Run in the thread pool so it never blocks the event loop."""
    PROCESS = "process"
    """Run in a process pool, for CPU-bound work; needs a module-level function."""


#: The built-in executors' names: ``Task(executor=...)`` naming another may name its
#: function by a string this process does not import (see :class:`RemoteFunction`).
_MODE_NAMES = frozenset(mode.value for mode in Mode)


class Overlap(_Choice):
    """What a periodic task does when it fires while its previous run is still going."""

    SKIP = "skip"
    """Record a ``skipped`` run with reason ``overlap`` (the default)."""
    QUEUE = "queue"
    """Start right after the current run ends; at most one waits."""
    ALLOW = "allow"
    """Run both at the same time."""


class CatchUp(_Choice):
    """What to do with several fires of a task due at once (after a restart, a blocked
    loop), or with one later than ``misfire_grace``; one ``missed`` record counts those
    that do not run."""

    ONCE = "once"
    """Run one ``catch_up`` run, for the latest of them (the default)."""
    SKIP = "skip"
    """Run only the latest, and only if it is late by at most ``misfire_grace``."""
    ALL = "all"
    """Run each of them, capped at 100 (the rest are recorded ``missed``).

    The replays run one after another, oldest first, whatever ``overlap`` says: each
    waits until no run of the task is live. ``overlap`` still applies to a fresh fire
    (or a manual request) that comes while a replay runs."""


@dataclass(frozen=True, slots=True, init=False)
class Task:
    """A named callable with its trigger and policies. Immutable; validated on construction.

    :param name: unique name, ``[A-Za-z0-9_.:-]{1,200}``.
    :param func: a callable, or a ``"package.module:attr"`` string imported at construction.
    :param args: positional arguments for ``func``; checked against its signature.
    :param kwargs: keyword arguments for ``func``; checked against its signature.
    :param trigger: ``Every``, ``Cron``, ``At``, or ``None`` for on-demand only.
    :param priority: ``high``/``normal``/``low`` (or ``haute``/``normale``/``basse``).
    :param depends_on: a task name or names that must succeed before each run.
    :param mode: ``async``/``sync``/``process``; inferred from ``func`` when ``None``.
    :param executor: the name of the executor that runs each attempt (a built-in --
        ``async``, ``sync``, ``process`` -- or one a plugin registers); ``None``: the
        mode's built-in.
    :param max_retries: extra attempts after a failed one.
    :param retry_delay: seconds (or a timedelta) before the first retry.
    :param retry_backoff: multiplier applied to the delay for each further retry (1 = fixed).
    :param timeout: seconds an attempt may run before it fails, or ``None``.
    :param overlap: ``skip``/``queue``/``allow`` when a fire finds the previous run going.
    :param catch_up: ``once``/``skip``/``all`` for several fires due at once (a restart).
    :param misfire_grace: seconds a lone fire may be late and still run as scheduled.
    :param jitter: up to this many random seconds added to each fire and retry.
    :param alert_on_failure: send alerts when the task keeps failing.
    :param alert_after: consecutive failed runs that trigger one ``failing`` alert.
    :param recover: re-run a run lost with a crashed replica (at-least-once).
    :param enabled: a disabled task is registered but never fires on its own.
    :param description: free text for people.
    :param tags: labels for filtering; a bare string is one tag.
    """

    name: str
    func: Callable[..., Any] = field(repr=False)
    target: str = field(init=False, compare=False)
    """``"module:qualname"`` of ``func`` for display (the string given, when one was)."""
    runs_on: str = field(init=False, compare=False, repr=False)
    """The name of the executor that runs it: ``executor``, else the mode's built-in
    (computed once: the ready queue and the runtime read it for every run)."""
    _: KW_ONLY
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = _UNSET
    trigger: Trigger | None = None
    priority: Priority = Priority.NORMAL
    depends_on: tuple[str, ...] = ()
    mode: Mode = _UNSET
    executor: str | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    timeout: float | None = None
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.ONCE
    misfire_grace: float = 60.0
    jitter: float = 0.0
    alert_on_failure: bool = True
    alert_after: int = 1
    recover: bool = False
    enabled: bool = True
    description: str = ""
    tags: frozenset[str] = _NO_TAGS

    @property
    def definition(self) -> str:
        """What this task runs and when, in words: replicas compare it to find a name
        defined two ways. Arguments, description and tags are left out."""
        trigger = self.trigger
        if trigger is None or trigger.__class__ in _SHARED_TEXT:
            return _definition(self.target, trigger, _defining_values(self))
        return _definition.__wrapped__(self.target, trigger, _defining_values(self))

    if TYPE_CHECKING:  # the accepted input types, wider than the stored canonical ones

        def __init__(
            self,
            name: str,
            func: Callable[..., Any] | str,
            *,
            args: tuple[Any, ...] | list[Any] = (),
            kwargs: Mapping[str, Any] | None = None,
            trigger: Trigger | None = None,
            priority: Priority | str = "normal",
            depends_on: str | Iterable[str] = (),
            mode: Mode | str | None = None,
            executor: str | None = None,
            max_retries: int = 0,
            retry_delay: float | timedelta = 0.0,
            retry_backoff: float = 1.0,
            timeout: float | timedelta | None = None,
            overlap: Overlap | str = "skip",
            catch_up: CatchUp | str = "once",
            misfire_grace: float | timedelta = 60.0,
            jitter: float | timedelta = 0.0,
            alert_on_failure: bool = True,
            alert_after: int = 1,
            recover: bool = False,
            enabled: bool = True,
            description: str = "",
            tags: str | Iterable[str] = (),
        ) -> None: ...

    else:  # what runs: every option checked once, in the order above, then stored once

        def __init__(
            self,
            name: Any = _MISSING,
            func: Any = _MISSING,
            *extra: Any,
            args: Any = (),
            kwargs: Any = NO_KWARGS,
            trigger: Any = None,
            priority: Any = Priority.NORMAL,
            depends_on: Any = (),
            mode: Any = None,
            executor: Any = None,
            max_retries: Any = 0,
            retry_delay: Any = 0.0,
            retry_backoff: Any = 1.0,
            timeout: Any = None,
            overlap: Any = Overlap.SKIP,
            catch_up: Any = CatchUp.ONCE,
            misfire_grace: Any = 60.0,
            jitter: Any = 0.0,
            alert_on_failure: Any = True,
            alert_after: Any = 1,
            recover: Any = False,
            enabled: Any = True,
            description: Any = "",
            tags: Any = _NO_TAGS,
            **unknown: Any,
        ) -> None:
            if extra or unknown or name is _MISSING or func is _MISSING:
                _refuse_call(name, func, extra, unknown)
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                msg = f"task name must be 1 to 200 characters matching {NAME_PATTERN}; "
                fail(name if isinstance(name, str) else None, "name", f"{msg}got {name!r}")
            func, target = _resolve(func, name, executor)
            if args.__class__ is not tuple:
                args = args_tuple(args, name)
            if kwargs is not NO_KWARGS:
                kwargs = kwargs_mapping(kwargs, name)
            shape = plain_shape(func)
            if func.__class__ is not RemoteFunction and (
                args or kwargs or shape is None or not shape[0]
            ):
                check_bind(func, target, name, *args, **kwargs)
            mode = _mode(func, target, mode, name, None if shape is None else shape[1])
            if executor is not None and (
                not isinstance(executor, str) or not _EXECUTOR_RE.fullmatch(executor)
            ):
                msg = "must be an executor's name: a letter or _, then letters, digits, _ or -"
                bad(name, "executor", msg, executor)
            if trigger is not None and (trigger.__class__ is not Every or trigger._unwarned):
                _trigger(trigger, name)  # else an Every that warned already, if it had to
            if priority.__class__ is not Priority:
                priority = Priority.parse(priority, task=name, field="priority")
            if overlap.__class__ is not Overlap:
                overlap = Overlap.parse(overlap, task=name, field="overlap")
            if catch_up.__class__ is not CatchUp:
                catch_up = CatchUp.parse(catch_up, task=name, field="catch_up")
            if depends_on.__class__ is not tuple or depends_on:
                depends_on = depends_on_names(depends_on, name)
            plain = (max_retries, alert_after, retry_delay, misfire_grace, jitter, retry_backoff)
            plain += (timeout, alert_on_failure, recover, enabled, description)
            if not all(map(operator.is_, plain, _PLAIN_DEFAULTS)):  # the defaults are valid
                retry_delay, misfire_grace, jitter, retry_backoff, timeout = plain_options(
                    name, *plain
                )
            if tags is not _NO_TAGS:
                tags = frozenset(strings(tags, name, "tags")) or _NO_TAGS
            runs_on = executor if executor is not None else mode._value_
            cls, fill = self.__class__, self
            if cls is Task:  # see _Writable
                _put(self, "__class__", _Writable)
            else:
                fill = _Unfrozen(self)  # a subclass: slower, the same fields
            fill.name = name
            fill.func = func
            fill.target = target
            fill.runs_on = runs_on
            fill.args = args
            fill.kwargs = kwargs
            fill.trigger = trigger
            fill.priority = priority
            fill.depends_on = depends_on
            fill.mode = mode
            fill.executor = executor
            fill.max_retries = max_retries
            fill.retry_delay = retry_delay
            fill.retry_backoff = retry_backoff
            fill.timeout = timeout
            fill.overlap = overlap
            fill.catch_up = catch_up
            fill.misfire_grace = misfire_grace
            fill.jitter = jitter
            fill.alert_on_failure = alert_on_failure
            fill.alert_after = alert_after
            fill.recover = recover
            fill.enabled = enabled
            fill.description = description
            fill.tags = tags
            if cls is Task:
                _put(self, "__class__", Task)

    def __hash__(self) -> int:
        # Names are unique in a scheduler, and kwargs (a mapping) is not hashable.
        return hash(self.name)

    @property
    def is_periodic(self) -> bool:
        """True when the task fires on its own (it has a trigger)."""
        return self.trigger is not None

    def replace(self, **changes: Any) -> Task:
        """Return a copy with ``changes`` applied, validated like a new task.

        Changing ``func`` without ``mode`` infers the mode again, unless it is ``process``.
        """
        if "func" in changes and "mode" not in changes and self.mode is not Mode.PROCESS:
            changes["mode"] = None
        new = dataclasses.replace(self, **changes)
        if "func" not in changes:
            object.__setattr__(new, "target", self.target)  # keep the string the user gave
        return new


#: A Task while its ``__init__`` fills it (see :mod:`._frozen`): 25 plain assignments
#: instead of 25 ``object.__setattr__`` calls; nothing else ever sees one.
_Writable = writable_twin(Task)


@final
class _Unfrozen:
    """Sets the fields of a subclass of Task (whose layout may differ from ``_Writable``)
    one ``object.__setattr__`` at a time."""

    __slots__ = ("_task",)
    _task: Task

    def __init__(self, task: Task) -> None:
        _put(self, "_task", task)

    def __setattr__(self, name: str, value: object) -> None:
        _put(self._task, name, value)


_OPTIONS = tuple(
    f.name for f in dataclasses.fields(Task) if f.init and f.name not in ("name", "func")
)
_BUILTIN_TRIGGERS = (Every, Cron, At)
#: The options that make a task's definition, beside its function and trigger.
_DEFINING = tuple(
    name for name in _OPTIONS if name not in ("args", "kwargs", "trigger", "description", "tags")
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Task)}
_defining_values = operator.attrgetter(*_DEFINING)


#: Triggers whose equal values have one text: tasks defined alike share one definition.
_SHARED_TEXT = (Every, Cron)


@lru_cache(maxsize=1024)  # 100,000 tasks of a few kinds: a few texts, computed (and kept) once
def _definition(target: str, trigger: Trigger | None, values: tuple[Any, ...]) -> str:
    """A task's definition: its function, its trigger, and its defining options that
    are not their defaults, in words."""
    when = "on demand" if trigger is None else repr(trigger)
    options = "".join(
        f", {name}={value.value if isinstance(value, Enum) else repr(value)}"
        for name, value in zip(_DEFINING, values, strict=True)
        if value != _DEFAULTS[name]
    )
    return f"{target}, {when}{options}"


#: The options :func:`plain_options` checks, and the very objects ``Task.__init__`` defaults
#: them to: a task that leaves them all as they are (most do) skips the checks.
_PLAIN = (
    "max_retries",
    "alert_after",
    "retry_delay",
    "misfire_grace",
    "jitter",
    "retry_backoff",
    "timeout",
    "alert_on_failure",
    "recover",
    "enabled",
    "description",
)
_PLAIN_DEFAULTS = tuple((Task.__init__.__kwdefaults__ or {})[key] for key in _PLAIN)


def _refuse_call(
    name: object, func: object, extra: tuple[Any, ...], unknown: dict[str, Any]
) -> NoReturn:
    """Raise for a call Python itself would refuse with a bare ``TypeError``: a misspelt
    option is a ConfigError with a hint, extra positional arguments say how to pass them."""
    task = name if isinstance(name, str) else None
    if extra:
        msg = "Task() takes the name and func by position; pass the rest by keyword, "
        msg += f"e.g. trigger=...; got {2 + len(extra)} positional arguments"
        fail(task, "args", msg)
    for key in unknown:
        hint = _did_you_mean(key, list(_OPTIONS))
        known = "" if hint else "; known options: " + ", ".join(_OPTIONS)
        fail(task, key, f"Task() has no option {key!r}{hint or known}")
    missing = [repr(key) for key, value in (("name", name), ("func", func)) if value is _MISSING]
    count = f"{len(missing)} required positional argument{'s' if len(missing) > 1 else ''}"
    raise TypeError(f"Task.__init__() missing {count}: {' and '.join(missing)}")


def _resolve(func: object, task: str, executor: str | None) -> tuple[Callable[..., Any], str]:
    """Import a ``"module:attr"`` string; return the callable and its display name.

    With an executor other than the built-ins, a string that is not ``module:attr`` (a
    Celery task's name) or does not import here stands for a :class:`RemoteFunction`:
    the executor checks that it can run it (``Executors.check``).
    """
    remote = executor is not None and executor not in _MODE_NAMES
    if isinstance(func, str) and remote and ":" not in func:
        return RemoteFunction(func, "a name without ':' is not imported"), func
    if func.__class__ is RemoteFunction:
        return func, func.name
    if not isinstance(func, str):
        if not callable(func):
            bad(task, "func", "must be a callable or a 'package.module:function' string", func)
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
        ok = isinstance(module, str) and isinstance(qualname, str)
        # interned: the tasks of one function share their target
        return func, sys.intern(f"{module}:{qualname}") if ok else repr(func)
    module_name, _, attr = func.partition(":")
    if not module_name or not attr:
        form = "'package.module:function' (or 'package.module:Class.method')"
        fail(task, "func", f"func string {func!r} must have the form {form}; add the ':'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        if remote:
            return RemoteFunction(func, f"cannot import module {module_name!r}: {why}"), func
        msg = f"cannot import module {module_name!r} for func {func!r} ({why}); check the path"
        raise ConfigError(
            msg + " and that its package is installed", task=task, field="func"
        ) from exc
    for i, part in enumerate(parts := attr.split(".")):
        if not hasattr(obj, part):
            where = f" ({'.'.join(parts[:i])!r} has no {part!r})" if i else ""
            hint = _did_you_mean(part, [n for n in dir(obj) if not n.startswith("_")])
            msg = f"module {module_name!r} has no attribute {attr!r}{where}{hint}"
            fail(task, "func", msg + "; check the name after ':'")
        obj = getattr(obj, part)
    if not callable(obj):
        fail(task, "func", f"{func!r} is a {type(obj).__name__}, not a callable")
    return obj, func


def _mode(
    func: Callable[..., Any], target: str, mode: object, task: str, is_async: bool | None
) -> Mode:
    """The mode given (checked against ``func``), or the one ``func`` calls for;
    ``is_async``: known already (a plain function), or None."""
    if func.__class__ is RemoteFunction:  # the remote workers call it as they do
        return Mode.SYNC if mode is None else Mode.parse(mode, task=task)
    if is_async is None:
        is_async = is_async_callable(func)
    if mode is None:
        return Mode.ASYNC if is_async else Mode.SYNC
    parsed = Mode.parse(mode, task=task)
    if (parsed is Mode.ASYNC) != is_async:
        kind, fix = ("async", "'async'") if is_async else ("synchronous", "'sync' or 'process'")
        msg = f"mode {parsed.value!r} does not fit {target}, which is {kind}; use mode={fix}"
        fail(task, "mode", msg + " or leave mode unset to infer it")
    if parsed is Mode.PROCESS:
        check_importable(func, target, task)
    return parsed


def _trigger(trigger: object, task: str) -> None:
    if trigger is None:
        return
    if trigger.__class__ not in _BUILTIN_TRIGGERS and not isinstance(trigger, Trigger):
        bad(task, "trigger", "must be Every(...), Cron(...), At(...) or None", trigger)
    warn_short_interval(trigger, task)  # when xtasks built it (YAML): the user's Every warned
