"""xtasks: a pluggable task scheduler for async Python applications.

The public API is what ``__all__`` lists, plus these modules: :mod:`xtasks.events` (what
subscribers receive), :mod:`xtasks.abc` (interfaces for implementers: stores, alerters,
triggers, clocks), :mod:`xtasks.stores`, :mod:`xtasks.testing` and :mod:`xtasks.hookspecs`.
Modules whose names start with ``_`` may change at any time.
"""

from __future__ import annotations

from . import abc as abc
from . import events as events
from ._decisions import Attempt as Attempt
from ._errors import AuditWriteError as AuditWriteError
from ._errors import ConfigError as ConfigError
from ._errors import ConfigFileError as ConfigFileError
from ._errors import CronError as CronError
from ._errors import DependencyCycleError as DependencyCycleError
from ._errors import DuplicateTaskError as DuplicateTaskError
from ._errors import PluginError as PluginError
from ._errors import RunTimeoutError as RunTimeoutError
from ._errors import SchedulerStateError as SchedulerStateError
from ._errors import SecretInConfigWarning as SecretInConfigWarning
from ._errors import ShortIntervalWarning as ShortIntervalWarning
from ._errors import StoreError as StoreError
from ._errors import TaskNotFoundError as TaskNotFoundError
from ._errors import TaskStateError as TaskStateError
from ._errors import UnknownDependencyError as UnknownDependencyError
from ._errors import XtasksError as XtasksError
from ._errors import XtasksWarning as XtasksWarning
from ._runs import AttemptRecord as AttemptRecord
from ._runs import AuditRecord as AuditRecord
from ._runs import ErrorInfo as ErrorInfo
from ._runs import RunCause as RunCause
from ._runs import RunRecord as RunRecord
from ._runs import RunStatus as RunStatus
from ._runs import TaskInfo as TaskInfo
from ._runs import TaskState as TaskState
from ._scheduler import RunHandle as RunHandle
from ._scheduler import Scheduler as Scheduler
from ._scheduler import SchedulerStats as SchedulerStats
from ._task import CatchUp as CatchUp
from ._task import Mode as Mode
from ._task import Overlap as Overlap
from ._task import Priority as Priority
from ._task import Task as Task
from ._triggers import At as At
from ._triggers import Cron as Cron
from ._triggers import Every as Every
from .hookspecs import hookimpl as hookimpl

__all__ = [
    "At",
    "Attempt",
    "AttemptRecord",
    "AuditRecord",
    "AuditWriteError",
    "CatchUp",
    "ConfigError",
    "ConfigFileError",
    "Cron",
    "CronError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "ErrorInfo",
    "Every",
    "Mode",
    "Overlap",
    "PluginError",
    "Priority",
    "RunCause",
    "RunHandle",
    "RunRecord",
    "RunStatus",
    "RunTimeoutError",
    "Scheduler",
    "SchedulerStateError",
    "SchedulerStats",
    "SecretInConfigWarning",
    "ShortIntervalWarning",
    "StoreError",
    "Task",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "UnknownDependencyError",
    "XtasksError",
    "XtasksWarning",
    "hookimpl",
]

#: Old top-level names kept for one release: name -> (module, name there). Each access
#: warns with the new place, then returns the same object, so old code keeps working.
_MOVED: dict[str, tuple[str, str]] = {
    "TriggerKind": ("xtasks", "RunCause"),
    "Alert": ("xtasks.events", "Alert"),
    "AlertKind": ("xtasks.events", "AlertKind"),
    "Event": ("xtasks.events", "Event"),
    "RunChanged": ("xtasks.events", "RunChanged"),
    "TaskStateChanged": ("xtasks.events", "TaskStateChanged"),
    "TaskRecord": ("xtasks.abc", "TaskRecord"),
    "Trigger": ("xtasks.abc", "Trigger"),
}


def __getattr__(name: str) -> object:
    """Resolve a name that moved (see ``_MOVED``) with a DeprecationWarning naming its new place."""
    moved = _MOVED.get(name)
    if moved is None:
        raise AttributeError(f"module 'xtasks' has no attribute {name!r}")
    import importlib
    import warnings

    module, new_name = moved
    if name == new_name:
        message = f"xtasks.{name} moved to {module}.{new_name}; import it from there"
    else:
        message = f"xtasks.{name} is deprecated; use {module}.{new_name}"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), new_name)
