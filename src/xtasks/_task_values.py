"""The checks of a task's option values: each says which option of which task is wrong and
what it must be, and returns the canonical value the planner and the runtime read."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from ._task_func import bad, fail

NAME_PATTERN = r"[A-Za-z0-9_.:-]{1,200}"
NAME_RE = re.compile(NAME_PATTERN)
NO_KWARGS: Mapping[str, Any] = MappingProxyType({})  # immutable: every task may share it


def plain_options(
    task: str,
    max_retries: object,
    alert_after: object,
    retry_delay: object,
    misfire_grace: object,
    jitter: object,
    retry_backoff: object,
    timeout: object,
    alert_on_failure: object,
    recover: object,
    enabled: object,
    description: object,
) -> tuple[float, float, float, float, float | None]:
    """Check the numbers, flags and description of a task, in the order of its fields;
    return the numbers as floats (the counts and the rest are stored as given)."""
    check_int(max_retries, task, "max_retries", 0)
    check_int(alert_after, task, "alert_after", 1)
    delay = finite(retry_delay, task, "retry_delay")
    grace = finite(misfire_grace, task, "misfire_grace")
    spread = finite(jitter, task, "jitter")
    backoff = finite(retry_backoff, task, "retry_backoff")
    limit = None if timeout is None else finite(timeout, task, "timeout")
    check_bool(alert_on_failure, task, "alert_on_failure")
    check_bool(recover, task, "recover")
    check_bool(enabled, task, "enabled")
    if not isinstance(description, str):
        bad(task, "description", "must be a string", description)
    return delay, grace, spread, backoff, limit


def args_tuple(args: object, task: str) -> tuple[Any, ...]:
    if not isinstance(args, tuple | list):
        bad(task, "args", "must be a tuple or list (for one argument: args=(value,))", args)
    return tuple(args)


def kwargs_mapping(kwargs: object, task: str) -> Mapping[str, Any]:
    if kwargs is None:
        return NO_KWARGS
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        bad(task, "kwargs", "must be a mapping of argument names (str) to values", kwargs)
    return MappingProxyType(dict(kwargs))


def check_bool(value: object, task: str, key: str) -> None:
    if not isinstance(value, bool):
        bad(task, key, "must be True or False", value)


def strings(value: object, task: str, key: str) -> list[str]:
    """A bare string is one item; otherwise an iterable of strings."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
        bad(task, key, "must be a string or a list of strings", value)
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            bad(task, key, "must contain only strings", item)
    return items


def depends_on_names(value: object, task: str) -> tuple[str, ...]:
    names = dict.fromkeys(strings(value, task, "depends_on"))  # dedupe, keep order
    for dep in names:
        if not NAME_RE.fullmatch(dep):
            bad(task, "depends_on", f"entries must be task names matching {NAME_PATTERN}", dep)
        if dep == task:
            fail(task, "depends_on", f"{task!r} cannot depend on itself; remove it")
    return tuple(names)


def check_int(value: object, task: str, key: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bad(task, key, f"must be an integer >= {minimum}", value)


def finite(value: object, task: str, key: str) -> float:
    """A finite float within the field's range; durations also accept a ``timedelta``."""
    seconds = key != "retry_backoff"
    low, strict = (1.0 if not seconds else 0.0), key == "timeout"
    if type(value) is float and low <= value < math.inf and not (strict and value == low):
        return value  # already canonical: the usual case
    number = value.total_seconds() if seconds and isinstance(value, timedelta) else value
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or number < low
        or (strict and number == low)
    ):
        unit = " of seconds (int, float or datetime.timedelta)" if seconds else ""
        rule = f"must be a finite number{unit} {'>' if strict else '>='} {low:g}"
        bad(task, key, rule + (" or None" if strict else ""), value)
    return float(number)
