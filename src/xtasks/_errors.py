"""Every error and warning xtasks raises, under one root.

::

    XtasksError
      ConfigError            a Task field, trigger or configuration value is invalid
        CronError            a cron expression is malformed or can never fire
        DependencyCycleError a depends_on graph has a cycle (the path is named)
        UnknownDependencyError  a task depends on a name no task has (raised at start)
        ConfigFileError      a YAML file is malformed or invalid (path, line, column, key)
      PluginError            a plugin failed to load or misbehaved (distribution, entry point)
      TaskNotFoundError      no task of that name (also a LookupError)
      DuplicateTaskError     a task of that name is already registered
      SchedulerStateError    the call needs a running (or a stopped) scheduler
      TaskStateError         the task is paused or cancelled, so it cannot run now
      StoreError             a store backend failed; the driver error is chained
        AuditWriteError      a manual action was done, but its audit record was not written
      RunTimeoutError        outcome: an attempt exceeded the task's timeout

    XtasksWarning (UserWarning)
      ShortIntervalWarning   an interval under 5 seconds
      SecretInConfigWarning  a password, secret or token written literally in YAML

Errors carry their structured fields as attributes, and build the message from them, so
an API can serialise them and a person can act on the message.
"""

from __future__ import annotations

__all__ = [
    "AuditWriteError",
    "ConfigError",
    "ConfigFileError",
    "CronError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "PluginError",
    "RunTimeoutError",
    "SchedulerStateError",
    "SecretInConfigWarning",
    "ShortIntervalWarning",
    "StoreError",
    "TaskNotFoundError",
    "TaskStateError",
    "UnknownDependencyError",
    "XtasksError",
    "XtasksWarning",
]


class XtasksError(Exception):
    """Base of every error xtasks raises."""


class ConfigError(XtasksError):
    """A value a user gave is invalid; the message names where it came from and the fix.

    :param message: what is wrong and what to do about it.
    :param task: the task name the value belongs to, when known.
    :param field: the field or key that holds the bad value, when known.
    """

    def __init__(self, message: str, *, task: str | None = None, field: str | None = None) -> None:
        self.task = task
        self.field = field
        where = []
        if task is not None:
            where.append(f"task {task!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.message = message


class CronError(ConfigError):
    """A cron expression is malformed, or matches no instant at all."""


class DependencyCycleError(ConfigError):
    """Adding a task would close a cycle in the ``depends_on`` graph.

    :param path: the cycle, first name repeated at the end (``["a", "b", "a"]``).
    """

    def __init__(self, path: list[str]) -> None:
        self.path = path
        super().__init__(
            "dependency cycle " + " -> ".join(path) + "; remove one of these depends_on entries",
            task=path[0],
            field="depends_on",
        )


class UnknownDependencyError(ConfigError):
    """A task depends on a task name that is not registered when the scheduler starts."""

    def __init__(self, task: str, missing: str, known: list[str]) -> None:
        self.missing = missing
        hint = _did_you_mean(missing, known)
        super().__init__(
            f"depends on {missing!r}, which is not a registered task{hint}; "
            "add that task or remove it from depends_on",
            task=task,
            field="depends_on",
        )


class ConfigFileError(ConfigError):
    """A configuration file is malformed or invalid; says where, down to the key.

    :param path: the file.
    :param message: what is wrong and what to do.
    :param line: 1-based line of the offending key or value, when known.
    :param column: 1-based column, when known.
    :param key: dotted path of the key, e.g. ``tasks.export.cron``.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.key = key
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        text = f"{where}: " + (f"{key}: " if key else "") + message
        XtasksError.__init__(self, text)
        self.task = None
        self.field = key
        self.message = message


class PluginError(XtasksError):
    """A plugin could not be loaded, or a hook of it misbehaved.

    :param message: what happened and what to do.
    :param distribution: the installed distribution (``name version``) that ships it.
    :param entry_point: the entry point, as ``name = module:object``.
    :param hook: the hook that misbehaved, when it is about one.
    """

    def __init__(
        self,
        message: str,
        *,
        distribution: str | None = None,
        entry_point: str | None = None,
        hook: str | None = None,
    ) -> None:
        self.distribution = distribution
        self.entry_point = entry_point
        self.hook = hook
        where = []
        if distribution:
            where.append(f"distribution {distribution}")
        if entry_point:
            where.append(f"entry point {entry_point!r}")
        if hook:
            where.append(f"hook {hook}")
        prefix = ("plugin (" + ", ".join(where) + "): ") if where else "plugin: "
        super().__init__(prefix + message)
        self.message = message


class TaskNotFoundError(XtasksError, LookupError):
    """No task has this name."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = _did_you_mean(name, known or [])
        super().__init__(f"no task named {name!r}{hint}")


#: How to keep a plugin's tasks out of a scheduler, for messages about plugins' tasks.
_PLUGIN_SELECTION_HINT = (
    "Scheduler(plugins=[...]) loads only the plugins it names (plugins=False: none); from "
    "the environment, XTASKS_PLUGINS=name,... loads only those and "
    "XTASKS_DISABLE_PLUGIN_AUTOLOAD=1 none"
)
#: What :class:`DuplicateTaskError` calls tasks added in code, not by a plugin.
_APPLICATION = "the application"


class DuplicateTaskError(XtasksError):
    """A task with this name is already registered.

    :param name: the task's name.
    :param existing: who registered it: ``"the application"`` or a plugin (its distribution
        and entry point); None when unknown.
    :param new: who adds another of that name, the same way.
    """

    def __init__(self, name: str, *, existing: str | None = None, new: str | None = None) -> None:
        self.name = name
        self.existing = existing
        self.new = new
        message = f"a task named {name!r} is already registered"
        if existing is None or new is None or _APPLICATION == existing == new:
            message += "; choose another name or remove the existing task first"
        else:
            message += f" by {existing}, and {new} adds another; rename one of them, or "
            message += f"leave the plugin out: {_PLUGIN_SELECTION_HINT}"
        super().__init__(message)


class SchedulerStateError(XtasksError):
    """The call needs the scheduler in another state (running, or stopped)."""


class TaskStateError(XtasksError):
    """The task is paused or cancelled, so a manual run is refused; resume it first."""

    def __init__(self, task: str, state: str) -> None:
        self.task = task
        self.state = state
        super().__init__(
            f"task {task!r} is {state}; resume it (scheduler.resume({task!r})) to run it"
        )


class StoreError(XtasksError):
    """A store backend failed. The driver's own exception is chained as ``__cause__``."""


class AuditWriteError(StoreError):
    """A manual action was done, but its audit record could not be written.

    The action stands (a run was accepted: :attr:`run_id` names it), so a caller must not
    retry it; only the audit trail lacks the entry. The store's error is chained.
    """

    def __init__(self, action: str, task: str, run_id: str | None, reason: str) -> None:
        self.action = action
        self.task = task
        self.run_id = run_id  #: the accepted run, for ``"run"``
        self.reason = reason  #: why the record could not be written
        what = f"run {run_id} of task {task!r}" if action == "run" else f"{action} {task!r}"
        super().__init__(f"{what} was done, but its audit record could not be written: {reason}")


class RunTimeoutError(XtasksError):
    """An attempt ran longer than the task's ``timeout``; counted as a failure."""

    def __init__(self, task: str, timeout: float) -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task!r} exceeded its timeout of {timeout:g} s")


class XtasksWarning(UserWarning):
    """Base of every warning xtasks emits."""


class SecretInConfigWarning(XtasksWarning):
    """A secret written literally in a config file: use ``${ENV_VAR}`` instead."""


class ShortIntervalWarning(XtasksWarning):
    """An interval under 5 seconds: allowed, but usually a mistake in production."""


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
