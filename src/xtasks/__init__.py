"""xtasks: a pluggable task scheduler for async Python applications.

The public API is what ``__all__`` lists; modules whose names start with ``_`` may
change at any time. Implementers also use :mod:`xtasks.abc`, :mod:`xtasks.stores` and
:mod:`xtasks.testing`.
"""

from __future__ import annotations

from ._errors import ConfigError as ConfigError
from ._errors import ConfigFileError as ConfigFileError
from ._errors import CronError as CronError
from ._errors import DependencyCycleError as DependencyCycleError
from ._errors import DuplicateTaskError as DuplicateTaskError
from ._errors import PluginError as PluginError
from ._errors import RunCancelledError as RunCancelledError
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
from ._events import Alert as Alert
from ._events import AlertKind as AlertKind
from ._events import Event as Event
from ._events import RunChanged as RunChanged
from ._events import TaskStateChanged as TaskStateChanged
from ._runs import AuditRecord as AuditRecord
from ._runs import ErrorInfo as ErrorInfo
from ._runs import RunCause as RunCause
from ._runs import RunRecord as RunRecord
from ._runs import RunStatus as RunStatus
from ._runs import TaskInfo as TaskInfo
from ._runs import TaskRecord as TaskRecord
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
from ._triggers import Trigger as Trigger
from .hookspecs import hookimpl as hookimpl

__all__ = [
    "Alert",
    "AlertKind",
    "At",
    "AuditRecord",
    "CatchUp",
    "ConfigError",
    "ConfigFileError",
    "Cron",
    "CronError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "ErrorInfo",
    "Event",
    "Every",
    "Mode",
    "Overlap",
    "PluginError",
    "Priority",
    "RunCancelledError",
    "RunCause",
    "RunChanged",
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
    "TaskRecord",
    "TaskState",
    "TaskStateChanged",
    "TaskStateError",
    "Trigger",
    "UnknownDependencyError",
    "XtasksError",
    "XtasksWarning",
    "hookimpl",
]


def __getattr__(name: str) -> object:
    """``TriggerKind``: the old name of :class:`RunCause`, kept for one release."""
    if name == "TriggerKind":
        import warnings

        warnings.warn(
            "xtasks.TriggerKind is deprecated; use xtasks.RunCause",
            DeprecationWarning,
            stacklevel=2,
        )
        return RunCause
    raise AttributeError(f"module 'xtasks' has no attribute {name!r}")
