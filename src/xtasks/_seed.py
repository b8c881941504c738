"""The seed format: a plugin module's ``PLUGIN_TASKS`` dicts, which must load unchanged."""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from ._config_file import shown
from ._errors import ConfigError, _did_you_mean
from ._task import Task
from ._triggers import Cron, Every, warn_short_interval

__all__ = ["task_from_seed"]


_SEED_KEYS = (
    "name",
    "function",
    "interval_seconds",
    "cron",
    "async",
    "priority",
    "depends_on",
    "max_retries",
    "retry_delay_seconds",
    "alert_on_failure",
    "timeout_seconds",
    "executor",
)
_SEED_FIELD = {
    "function": "func",
    "retry_delay_seconds": "retry_delay",
    "timeout_seconds": "timeout",
}


def _seed_error(origin: str, key: str, message: str, task: object) -> ConfigError:
    named = f" (task {task!r})" if isinstance(task, str) else ""
    error = ConfigError(f"{origin}{named}, key {key!r}: {message}")
    error.task, error.field = (task if isinstance(task, str) else None), key
    return error


def _async_hint(flag: bool, function: object) -> str:
    """Why ``async`` does not fit the function, in the seed's own keys (not Task's ``mode``)."""
    if isinstance(function, str):
        shown_as = function
    else:
        module = getattr(function, "__module__", "?")
        shown_as = f"{module}:{getattr(function, '__qualname__', '?')}"
    if flag:
        return (
            f"'async': True contradicts the function: {shown_as} is a plain (synchronous) "
            "function; drop the 'async' key (it is inferred from the function) or make the "
            "function 'async def'"
        )
    return (
        f"'async': False contradicts the function: {shown_as} is an 'async def' function; "
        "drop the 'async' key (it is inferred from the function) or set 'async': True"
    )


def _site(function: object, name: object) -> tuple[str, int] | None:
    """File and line of the ``interval_seconds`` of the entry named ``name``, found in
    the source of the function's module (where ``PLUGIN_TASKS`` usually lives)."""
    module_name = (
        function.partition(":")[0]
        if isinstance(function, str)
        else getattr(function, "__module__", None)
    )
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    if module is None:
        return None
    try:
        filename = inspect.getsourcefile(module)
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    if filename is None:
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        keys = {
            k.value: (k, v)
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        }
        named = keys.get("name")
        if named and isinstance(named[1], ast.Constant) and named[1].value == name:
            return filename, keys.get("interval_seconds", named)[0].lineno
    return None


def task_from_seed(entry: Mapping[str, object], *, origin: str) -> Task:
    """A Task from one ``PLUGIN_TASKS`` dict: the seed format, which must load unchanged.

    A key set to None counts as not given. ``async`` picks mode ``async`` or ``sync``.

    :param origin: where the dict came from, e.g. ``"PLUGIN_TASKS[2] of xcore_billing.tasks"``.
    :raises ConfigError: naming ``origin`` and the key.
    """
    if not isinstance(entry, Mapping):
        msg = f"{origin} must be a dict with keys {', '.join(_SEED_KEYS)}; got {shown(entry)}"
        raise ConfigError(msg)
    name = entry.get("name")
    for key in entry:
        if key not in _SEED_KEYS:
            hint = _did_you_mean(str(key), list(_SEED_KEYS)) or "; known: " + ", ".join(_SEED_KEYS)
            raise _seed_error(origin, str(key), f"unknown key {key!r}{hint}", name)
    given: dict[str, Any] = {k: v for k, v in entry.items() if v is not None}
    for key in ("name", "function"):
        if key not in given:
            raise _seed_error(origin, key, f"the required key {key!r} is missing", name)
    if "interval_seconds" in given and "cron" in given:
        raise _seed_error(origin, "cron", "give interval_seconds or cron, not both", name)
    kwargs: dict[str, Any] = {}
    for key, make in (("interval_seconds", Every), ("cron", Cron)):
        if key in given:
            try:
                kwargs["trigger"] = make(given[key])
            except ConfigError as exc:
                raise _seed_error(origin, key, exc.message, name) from exc
    if "async" in given:
        if not isinstance(flag := given["async"], bool):
            raise _seed_error(origin, "async", f"must be True or False; got {shown(flag)}", name)
        kwargs["mode"] = "async" if flag else "sync"
    for key in _SEED_KEYS[5:]:  # priority .. timeout_seconds: the Task validates them
        if key in given:
            kwargs[_SEED_FIELD.get(key, key)] = given[key]
    if "interval_seconds" in given:
        site = _site(given["function"], given["name"])
        warn_short_interval(kwargs["trigger"], str(given["name"]), where=origin, site=site)
    try:
        return Task(given["name"], given["function"], **kwargs)
    except ConfigError as exc:
        fields = {"func": "function", "mode": "async", **{v: k for k, v in _SEED_FIELD.items()}}
        key = fields.get(exc.field or "name", exc.field or "name")
        message = exc.message
        if key == "async":
            message = _async_hint(given["async"], given["function"])
        raise _seed_error(origin, key, message, name) from exc
