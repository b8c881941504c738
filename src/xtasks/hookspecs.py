"""Every hook a plugin can implement, typed and documented in one place.

A plugin is a module or object with functions marked ``@xtasks.hookimpl`` (named after
these specs), found through the entry-point group ``xtasks``::

    [project.entry-points.xtasks]
    billing = "xcore_billing.tasks"

Hooks are synchronous and cheap: they register things or observe. pluggy calls them in
turn; heavy work belongs in tasks, or in an alerter (which runs off the scheduler's path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._runs import RunRecord
    from ._scheduler import Scheduler
    from ._task import Task
    from .abc import Alerter, Executor, Store

__all__ = [
    "RegisterAlerter",
    "RegisterExecutor",
    "RegisterStore",
    "RegisterTask",
    "hookimpl",
    "hookspec",
    "xtasks_add_alerters",
    "xtasks_add_executors",
    "xtasks_add_stores",
    "xtasks_add_tasks",
    "xtasks_configure",
    "xtasks_run_finished",
]

hookspec = pluggy.HookspecMarker("xtasks")
#: Marks a plugin's implementation of a hook: ``@xtasks.hookimpl``.
hookimpl = pluggy.HookimplMarker("xtasks")


class RegisterTask(Protocol):
    """The callback :func:`xtasks_add_tasks` receives."""

    def __call__(self, task: Task | Mapping[str, object], /) -> None:
        """Contribute one task: a :class:`xtasks.Task`, or a dict in the seed format
        (the keys of ``PLUGIN_TASKS`` entries)."""


class RegisterAlerter(Protocol):
    """The callback :func:`xtasks_add_alerters` receives."""

    def __call__(self, kind: str, factory: Callable[..., Alerter], /) -> None:
        """Make ``kind`` usable in YAML: ``alerts: [{kind: <kind>, ...options}]`` calls
        ``factory(**options)``. An exception the factory raises about one option may name
        it in an ``option`` attribute: the error then points at that option's line."""


class RegisterStore(Protocol):
    """The callback :func:`xtasks_add_stores` receives."""

    def __call__(
        self, scheme: str, factory: Callable[[str], Store], /, *, example: str | None = None
    ) -> None:
        """Make ``<scheme>://...`` store URLs open with ``factory(url)``.

        ``scheme`` is bare (``"postgresql"``, no ``://``). ``factory`` gets the whole URL
        and returns an :class:`xtasks.abc.Store` not yet opened; it raises
        :class:`xtasks.ConfigError` for a URL it refuses, showing the URL only through
        :func:`xtasks.stores.redact_url`. ``example`` (``"postgresql://host/db"``) is
        how the scheme is listed when a URL names an unknown one."""


class RegisterExecutor(Protocol):
    """The callback :func:`xtasks_add_executors` receives."""

    def __call__(self, executor: Executor, /) -> None:
        """Make ``executor`` (an :class:`xtasks.abc.Executor`) selectable by its ``name``
        with ``Task(executor=...)``."""


# --- configuration ----------------------------------------------------------------------


@hookspec(historic=True)
def xtasks_configure(scheduler: Scheduler) -> None:
    """Adjust the scheduler once, after it is built and every plugin's tasks are in.

    Called once per scheduler, before it starts; a plugin registered later still
    receives the call (historic).

    :param scheduler: the scheduler; a plugin may call ``scheduler.subscribe(...)`` or
        read ``scheduler.tasks``. It must not start it.
    :return: nothing.

    Must not block.

    .. versionadded:: 0.1
    """


# --- contributions ----------------------------------------------------------------------


@hookspec
def xtasks_add_tasks(register: RegisterTask) -> None:
    """Contribute tasks, by calling ``register(task)`` once per task.

    Called once per scheduler, when it loads its plugins. Tasks contributed here are
    named in errors with the plugin that contributed them, and are overridden by the
    ``tasks:`` section of the plugin's ``config.yaml`` and of the application's file.

    :param register: call it with an :class:`xtasks.Task` or a seed-format dict.
    :return: nothing; the return value is ignored.

    Must not block.

    .. versionadded:: 0.1
    """


@hookspec
def xtasks_add_alerters(register: RegisterAlerter) -> None:
    """Contribute alerter kinds, by calling ``register(kind, factory)``.

    Called once per scheduler, when it loads its plugins. YAML entries
    ``alerts: [{kind: ..., ...}]`` are built with the factory registered for their kind.

    :param register: call it with a kind name and a factory taking the YAML options.
    :return: nothing; the return value is ignored.

    Must not block.

    .. versionadded:: 0.1
    """


@hookspec
def xtasks_add_stores(register: RegisterStore) -> None:
    """Contribute store backends, by calling ``register(scheme, factory)`` per URL scheme.

    Called once per scheduler, when it loads its plugins, before the store URL given to
    ``Scheduler(store=...)`` (or ``xtasks --store``) is opened with the factory of its
    scheme. The built-in ``memory`` and ``sqlite`` schemes are registered the same way.
    Two plugins registering one scheme is an error naming both.

    :param register: call it with a scheme and a ``factory(url) -> Store``.
    :return: nothing; the return value is ignored.

    Must not block. Nor must a factory: it builds the store, which the scheduler opens
    (connects) when it starts.

    .. versionadded:: 0.2
    """


@hookspec
def xtasks_add_executors(register: RegisterExecutor) -> None:
    """Contribute executors, by calling ``register(executor)`` per executor.

    Called once per scheduler, when it loads its plugins. A task selects one with
    ``Task(executor=name)`` (or ``executor:`` in the seed and YAML formats); the
    scheduler opens the executors its tasks use as it starts and closes them as it
    stops. Two executors with one name (a plugin's and a built-in's, or two plugins')
    is an error naming both.

    :param register: call it with an :class:`xtasks.abc.Executor`.
    :return: nothing; the return value is ignored.

    Must not block.

    .. versionadded:: 0.3
    """


# --- observation ------------------------------------------------------------------------


@hookspec
def xtasks_run_finished(record: RunRecord) -> Awaitable[None] | None:
    """Observe a run that reached a final status (succeeded, failed, skipped, ...).

    Called after the record is stored, for every final run.

    :param record: the run's final record.
    :return: ``None``, or an awaitable that the scheduler awaits in its task group
        under a timeout, with errors logged and isolated (an ``async def`` works).

    Must not block.

    .. versionadded:: 0.1
    """
