"""What a Scheduler is built from besides code: plugins, their config.yaml, the app's file.

Collects every problem before deciding, so one failed start (or ``xtasks check``) lists
them all, not just the first.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._alert_delivery import Channel
from ._config import Config, merge
from ._config_file import load_config
from ._errors import (
    _APPLICATION,
    ConfigError,
    ConfigFileError,
    DependencyCycleError,
    DuplicateTaskError,
    PluginError,
    XtasksError,
)
from ._graph import DependencyGraph
from ._plugins import BUILTIN_PLUGINS, load_plugins

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._plugins import LoadedPlugins, PluginOrigin
    from ._task import Task

__all__ = ["Setup", "check_options", "duplicate_task", "load_setup", "raise_all"]

_log = logging.getLogger("xtasks")


@dataclass(slots=True)
class Setup:
    """Plugins and merged configuration, with the problems met on the way."""

    plugins: LoadedPlugins
    config: Config
    problems: list[XtasksError]
    strict: bool

    def fail(self, error: XtasksError) -> None:
        self.problems.append(error)

    def register_tasks(self, add: Callable[[Task], object]) -> dict[str, PluginOrigin]:
        """``add`` every plugin's task; return where each came from, by name.

        A task ``add`` refuses (a cycle, a bad configured value) is a problem of the plugin
        that contributed it, named as such. Then logs, at INFO, one line per plugin and one
        per config file with what each brought, so a start-up says where its tasks came from.
        """
        origins: dict[str, PluginOrigin] = {}
        counts = dict.fromkeys(self.plugins.plugins, 0)
        cyclic = _cyclic(self._depends_on(task) for task, _ in self.plugins.tasks)
        for task, origin in self.plugins.tasks:
            try:
                if task.name in cyclic:  # one error for the cycle, not one per member
                    if (error := cyclic[task.name]) is None:
                        continue
                    raise error
                add(task)
            except XtasksError as exc:
                self.fail(
                    PluginError(
                        str(exc),
                        distribution=origin.distribution,
                        entry_point=origin.entry_point or origin.name,
                    )
                )
            else:
                origins[task.name] = origin
                counts[origin] += 1
        self._log_loaded(counts)
        return origins

    def _log_loaded(self, counts: Mapping[PluginOrigin, int]) -> None:
        kinds: dict[PluginOrigin, list[str]] = {}
        for kind, (_, origin) in self.plugins.alerter_kinds.items():
            kinds.setdefault(origin, []).append(kind)
        for origin, count in counts.items():
            if origin in self.plugins.degraded or (origin.name in BUILTIN_PLUGINS):
                continue
            more = f", alerter kinds {', '.join(kinds[origin])}" if origin in kinds else ""
            _log.info("loaded %s: %d task(s)%s", origin.label(), count, more)
        for file in self.config.files:
            channels = f", {len(file.alerts)} alert channel(s)" if file.alerts else ""
            _log.info(
                "loaded config %s: %d task(s) configured%s", file.path, len(file.tasks), channels
            )

    def _depends_on(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """The task's name and dependencies once configured (as ``add`` will see them)."""
        try:
            with warnings.catch_warnings():  # add() warns, once
                warnings.simplefilter("ignore")
                return task.name, self.config.apply(task).depends_on
        except XtasksError:  # reported when the task is added
            return task.name, task.depends_on

    def build_alerters(self) -> list[Channel]:
        """One alerter per ``alerts:`` entry, built by the factory of its kind, with the
        name tasks select it by (``alert_channels``)."""
        alerters: list[Channel] = []
        kinds = self.plugins.alerter_kinds
        for index, channel in enumerate(self.config.alerts):
            registered = kinds.get(channel.kind)
            if registered is None:
                known = ", ".join(sorted(kinds)) or "none"
                self.fail(
                    self.config.alert_error(
                        index,
                        f"unknown alert kind {channel.kind!r} (known: {known}); install the "
                        "distribution that provides it, e.g. `pip install xtasks-alerts` for "
                        "email and webhook",
                    )
                )
                continue
            factory, origin = registered
            try:
                alerters.append(Channel(factory(**channel.options), channel.name or channel.kind))
            except Exception as exc:  # noqa: BLE001 - a bad option or factory is reported
                option = getattr(exc, "option", None)  # the option it names, if any
                error = self.config.alert_error(
                    index,
                    f"cannot build the {channel.kind!r} alerter ({origin.describe()}): "
                    f"{type(exc).__name__}: {exc}",
                    option=option if option in channel.options else None,
                )
                error.__cause__ = exc
                self.fail(error)
        return alerters

    def raise_if_strict(self) -> None:
        if self.strict and self.problems:
            raise_all(self.problems)


def duplicate_task(name: str, origins: Mapping[str, PluginOrigin]) -> DuplicateTaskError:
    """The error for the application adding ``name`` again: who has it, how to resolve it.

    :param origins: where the scheduler's plugin tasks came from; a name absent from it
        was added by the application.
    """
    existing = origins.get(name)
    label = _APPLICATION if existing is None else existing.label()
    return DuplicateTaskError(name, existing=label, new=_APPLICATION)


def _cyclic(
    edges: Iterable[tuple[str, tuple[str, ...]]],
) -> dict[str, DependencyCycleError | None]:
    """Tasks on a ``depends_on`` cycle among ``edges``: the cycle's error for the member
    that closes it, None for the others.

    Adding them one by one would refuse only the member that closes the cycle and leave the
    others depending on it, reported again at start as "not a registered task".
    """
    graph, found = DependencyGraph(), dict[str, DependencyCycleError | None]()
    for name, depends_on in edges:
        try:
            graph.add(name, depends_on)
        except DependencyCycleError as exc:
            found.update(dict.fromkeys(exc.path))
            found[name] = exc
    return found


def check_options(shutdown_grace: float, thread_slots: int, process_slots: int | None) -> None:
    """Refuse the Scheduler's numeric options that make no sense, naming the option."""
    if not shutdown_grace >= 0:
        raise ConfigError(
            f"shutdown_grace must be a number of seconds >= 0, got {shutdown_grace!r}",
            field="shutdown_grace",
        )
    for name, value in (("thread_slots", thread_slots), ("process_slots", process_slots)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}", field=name)


def raise_all(problems: list[XtasksError]) -> None:
    """Raise the first problem; its message also lists the others."""
    first = problems[0]
    if len(problems) == 1:
        raise first
    others = "\n".join(f"  - {p}" for p in problems[1:])
    message = f"{first}\nand {len(problems) - 1} more problem(s):\n{others}"
    error: XtasksError
    if isinstance(first, ConfigFileError):
        error = ConfigFileError(
            first.path,
            f"{first.message}\n{others}",
            line=first.line,
            column=first.column,
            key=first.key,
        )
    elif isinstance(first, PluginError):
        error = PluginError(message, distribution=None, entry_point=None)
        error.distribution, error.entry_point, error.hook = (
            first.distribution,
            first.entry_point,
            first.hook,
        )
    else:
        error = ConfigError(message)
    setattr(error, "problems", problems)  # noqa: B010 - every problem stays inspectable
    raise error from first


def load_setup(
    plugins: bool | Iterable[object],
    config: str | os.PathLike[str] | None,
    *,
    strict: bool,
    environ: Mapping[str, str] | None = None,
) -> Setup:
    """Load plugins, then their ``config.yaml`` files, then the application's file."""
    env = os.environ if environ is None else environ
    loaded = load_plugins(plugins, environ=env)
    problems: list[XtasksError] = list(loaded.problems)
    paths: list[Path] = list(loaded.config_paths)
    app = config if config is not None else env.get("XTASKS_CONFIG") or None
    if app is not None:
        path = Path(app)
        if not path.is_file():
            problems.append(
                ConfigFileError(str(path), "no such file; check the path (or XTASKS_CONFIG)")
            )
        else:
            paths.append(path)
    files = []
    for path in paths:
        try:
            files.append(load_config(path))
        except ConfigFileError as exc:
            problems.extend(getattr(exc, "problems", None) or [exc])
    return Setup(plugins=loaded, config=merge(files), problems=problems, strict=strict)
