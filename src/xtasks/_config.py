"""Configuration: the files merged, later ones winning field by field, applied to tasks.

A plugin's ``config.yaml`` and then the application's file (each read by
:mod:`._config_file`) override tasks by name and configure alert channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ._config_file import (
    _NOT_TASK_FIELDS,
    _REPLACES,
    _TASK_FIELD,
    AlertChannel,
    ConfigFile,
    ConfigFileErrors,
    TaskOverride,
)
from ._errors import ConfigError, ConfigFileError, CronError, _did_you_mean
from ._triggers import Cron, Every, warn_short_interval

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from ._task import Task
    from ._triggers import Trigger

__all__ = ["Config", "merge"]


class _Setting(NamedTuple):
    value: Any
    file: ConfigFile
    key: str

    def error(self, message: str) -> ConfigFileError:
        return self.file.error(self.key, message, value=True)


@dataclass(frozen=True)
class Config:
    """Files merged in order: per task and field the last file wins, and remembers where."""

    files: tuple[ConfigFile, ...] = ()
    alerts: tuple[AlertChannel, ...] = ()
    _settings: Mapping[str, Mapping[str, _Setting]] = field(default_factory=dict, repr=False)
    _alert_settings: tuple[_Setting, ...] = field(default=(), repr=False)

    def error_at(self, task: str, key: str, message: str) -> ConfigFileError | None:
        """An error at the value that set ``tasks.<task>.<key>``; None when no file set it."""
        setting = self._settings.get(task, {}).get(key)
        return None if setting is None else setting.error(message)

    def alert_error(
        self, index: int, message: str, *, option: str | None = None
    ) -> ConfigFileError:
        """An error about ``alerts[index]`` (or one of its options) at its place in its file."""
        setting = self._alert_settings[index]
        key = setting.key if option is None else f"{setting.key}.{option}"
        return setting.file.error(key, message, value=option is not None)

    def alert_channels_for(self, task: str) -> list[str] | None:
        """The alert channel names configured for ``task``; None when no file says."""
        setting = self._settings.get(task, {}).get("alert_channels")
        return None if setting is None or setting.value is None else list(setting.value)

    @property
    def alert_channel_names(self) -> list[str]:
        """The names tasks select channels by: each entry's ``name``, else its ``kind``."""
        return [channel.name or channel.kind for channel in self.alerts]

    def unknown_alert_channels(self, tasks: Iterable[str]) -> list[ConfigFileError]:
        """One error per ``alert_channels`` entry of ``tasks`` that names no channel."""
        names = self.alert_channel_names
        problems = []
        settings = self._settings
        for task in [task for task in tasks if task in settings]:  # configured: the few
            for wanted in self.alert_channels_for(task) or ():
                if wanted not in names:
                    hint = _did_you_mean(wanted, names)
                    known = ", ".join(names) or "none yet: add an `alerts:` entry"
                    error = self.error_at(
                        task,
                        "alert_channels",
                        f"task {task!r} selects the alert channel {wanted!r}, which no "
                        f"`alerts:` entry defines{hint}; the channels are: {known}",
                    )
                    if error is not None:
                        problems.append(error)
        return problems

    def unknown_tasks(self, known: Collection[str]) -> list[ConfigFileError]:
        """One error per ``tasks:`` entry that names no known task, at that entry's line."""
        problems = []
        for file in self.files:
            for name in file.tasks:
                if name not in known:
                    hint = _did_you_mean(name, sorted(known))
                    msg = f"no task named {name!r} is registered{hint}; fix the name, install "
                    msg += "the plugin that provides it, or remove this entry"
                    problems.append(file.error(f"tasks.{name}", msg))
        return problems

    def apply(self, task: Task) -> Task:
        """``task`` with this configuration's overrides.

        ``enabled: false`` sets ``Task.enabled``: the task stays registered and visible
        and may be run by hand, but never fires on its own.

        :raises ConfigFileErrors: each value the task rejects, at the key that set it.
        """
        found = self._settings.get(task.name)
        if not found:
            return task
        problems: list[ConfigFileError] = []
        changes: dict[str, Any] = {}
        sources: dict[str, _Setting] = {}
        try:
            if (picked := _trigger(task.trigger, found)) is not None:
                sources["trigger"], changes["trigger"] = picked
                at = picked[0].file.position(picked[0].key, value=True)  # warn at that line
                site = None if at is None else (picked[0].file.path, at[0])
                warn_short_interval(picked[1], task.name, site=site)
        except ConfigFileError as exc:
            problems.append(exc)
        for key, setting in found.items():
            if key not in _NOT_TASK_FIELDS:
                attr = _TASK_FIELD.get(key, key)
                sources[attr], changes[attr] = setting, setting.value
        try:
            new = task.replace(**changes)
        except ConfigError as exc:
            for attr, value in changes.items():  # one at a time, so every bad value is named
                try:
                    task.replace(**{attr: value})
                except ConfigError as one:
                    problems.append(sources[attr].error(one.message))
                    problems[-1].__cause__ = one
            if not problems:  # only the combination fails
                culprit = sources.get(exc.field or "") or next(iter(sources.values()))
                problems.append(culprit.error(exc.message))
            raise ConfigFileErrors(problems) from problems[0].__cause__ or exc
        if problems:
            raise ConfigFileErrors(problems) from problems[0].__cause__
        return new


def _trigger(current: Trigger | None, found: Mapping[str, _Setting]) -> tuple[_Setting, Any] | None:
    """The trigger the settings ask for, with the setting that decided it; None: no change."""
    every, cron, zone = (found.get(k) for k in ("interval_seconds", "cron", "timezone"))
    if every is not None:
        try:
            return every, None if every.value is None else Every(seconds=every.value)
        except ConfigError as exc:
            raise every.error(exc.message) from exc
    if (setting := cron or zone) is None:
        return None
    old = current if isinstance(current, Cron) else None
    expression: str | None = cron.value if cron is not None else old.expression if old else None
    if expression is None:
        if zone is None:
            return setting, None  # cron: null makes the task on demand only
        msg = "timezone applies to a cron trigger, and this task has none; set cron as well"
        raise zone.error(msg)
    tz = zone.value if zone is not None else old.tz if old else "UTC"
    try:
        return setting, Cron(expression, tz=tz)
    except ConfigError as exc:
        culprit = (cron or setting) if isinstance(exc, CronError) else (zone or setting)
        raise culprit.error(exc.message) from exc


def merge(files: Sequence[ConfigFile]) -> Config:
    """Combine files in order (plugins' first, the application's last); later files win.

    Per task, field by field; setting ``interval_seconds`` drops an earlier ``cron`` (and
    ``timezone``) and vice versa. Alert channels are identified by ``name``, else by ``kind``.
    """
    settings: dict[str, dict[str, _Setting]] = {}
    channels: dict[str, _Setting] = {}
    for file in files:
        for name, override in file.tasks.items():
            current = settings.setdefault(name, {})
            for key in TaskOverride.model_fields:
                if key in override.model_fields_set:
                    for replaced in _REPLACES.get(key, ()):
                        current.pop(replaced, None)
                    current[key] = _Setting(getattr(override, key), file, f"tasks.{name}.{key}")
        for i, channel in enumerate(file.alerts):
            ident = f"kind {channel.kind}" if channel.name is None else f"name {channel.name}"
            channels[ident] = _Setting(channel, file, f"alerts.{i}")
    alerts = tuple(s.value for s in channels.values())
    return Config(tuple(files), alerts, settings, tuple(channels.values()))
