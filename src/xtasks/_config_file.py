"""Reading one configuration file: YAML with positions, ``${ENV}``, a strict schema.

Read with the safe loader, expanded (``${VAR}``, ``${VAR:-default}``) and checked against
the schema; every key keeps its line and column, so each error, even one found later when
a :class:`Task` rejects a value, names the file, the line and the dotted key.

:mod:`._yaml_loader` reads and composes the file under its budgets (size, depth, aliases,
nodes), so a hostile file is refused before it can cost much; the reader here caps the
dotted key length (:data:`MAX_KEY_PATH`) as it records each key's position.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._config_values import expand, has_secret, is_secret
from ._errors import ConfigError, ConfigFileError, SecretInConfigWarning, _did_you_mean
from ._yaml_loader import BoundedLoader, Position, position, read_text, syntax_error

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from pydantic_core import ErrorDetails


__all__ = [
    "MAX_KEY_PATH",
    "AlertChannel",
    "ConfigFile",
    "ConfigFileErrors",
    "TaskOverride",
    "load_config",
]

#: A dotted key (``tasks.export.tags.0``) longer than this is refused: the reader records
#: each one, so long keys nested deep would otherwise cost memory for every value below.
MAX_KEY_PATH = 1_000
_MAX_NAME = 200  # as Task names (NAME_PATTERN)
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class TaskOverride(BaseModel):
    """The fields a file may set on one task; a field left out keeps the task's own value."""

    model_config = _STRICT
    enabled: bool | None = None
    interval_seconds: float | None = None
    cron: str | None = None
    timezone: str | None = None
    priority: str | None = None
    depends_on: list[str] | None = None
    max_retries: int | None = None
    retry_delay_seconds: float | None = None
    retry_backoff: float | None = None
    timeout_seconds: float | None = None
    overlap: str | None = None
    catch_up: str | None = None
    misfire_grace_seconds: float | None = None
    jitter_seconds: float | None = None
    alert_on_failure: bool | None = None
    alert_after: int | None = None
    alert_channels: list[str] | None = None
    recover: bool | None = None
    description: str | None = None
    tags: list[str] | None = None
    executor: str | None = None


class AlertChannel(BaseModel):
    """One alert channel. Options beyond ``kind`` and ``name`` are kept for the alerter kind,
    which alone knows which of them it accepts."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    kind: str
    name: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Every key except ``kind`` and ``name``."""
        return dict(self.model_extra or {})


class _Document(BaseModel):
    model_config = _STRICT
    tasks: dict[str, TaskOverride] = Field(default_factory=dict)
    alerts: list[AlertChannel] = Field(default_factory=list)


# null means "none" only where none is a value: no trigger (on demand), no timeout.
_NULLABLE = frozenset({"interval_seconds", "cron", "timeout_seconds"})
# An expanded ${VAR} is text; in these fields it is read again as a YAML scalar ("3" -> 3).
_TYPED = frozenset(TaskOverride.model_fields) - {
    *("cron", "timezone", "priority", "depends_on", "overlap", "catch_up"),
    *("alert_channels", "description", "tags", "executor"),
}
_TASK_FIELD = {
    "retry_delay_seconds": "retry_delay",
    "timeout_seconds": "timeout",
    "misfire_grace_seconds": "misfire_grace",
    "jitter_seconds": "jitter",
}
_NOT_TASK_FIELDS = frozenset({"interval_seconds", "cron", "timezone", "alert_channels"})
_REPLACES = {"interval_seconds": ("cron", "timezone"), "cron": ("interval_seconds",)}
# Seed keys that only code can set: a YAML entry naming them is told so.
_CODE_ONLY = {
    "function": "the function is set in code (PLUGIN_TASKS or Task), not in YAML; remove it",
    "async": "'async' follows the function (async def or not) and is set in code "
    "(PLUGIN_TASKS or Task), not in YAML; remove it",
}
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_EXPECTED = {
    "bool_type": "true or false",
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of keys",
}
_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}


class ConfigFileErrors(ConfigFileError):
    """Every problem found at once, so a person fixes them in one pass.

    It reads as (and has the position of) the first; ``problems`` holds them all.
    """

    def __init__(self, problems: Sequence[ConfigFileError]) -> None:
        first = problems[0]
        super().__init__(
            first.path, first.message, line=first.line, column=first.column, key=first.key
        )
        self.problems = list(problems)
        if len(problems) > 1:
            self.args = (f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems),)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return "mapping" if isinstance(value, dict) else _KINDS.get(type(value), type(value).__name__)


def shown(value: object) -> str:
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({_kind(value)})"


@dataclass(frozen=True)
class ConfigFile:
    """One loaded file: its validated content and where each key and value was written.

    ``keys`` and ``values`` map dotted keys (``tasks.export.cron``, ``alerts.0.kind``) to
    1-based ``(line, column)``, so errors found later still point into the file.
    """

    path: str
    tasks: Mapping[str, TaskOverride] = field(default_factory=dict)
    alerts: tuple[AlertChannel, ...] = ()
    keys: Mapping[str, Position] = field(default_factory=dict, repr=False)
    values: Mapping[str, Position] = field(default_factory=dict, repr=False)

    def position(self, key: str, *, value: bool = False) -> Position | None:
        """``(line, column)`` of dotted ``key`` (or of its value); None when not in the file."""
        return (self.values if value else self.keys).get(key)

    def error(self, key: str, message: str, *, value: bool = False) -> ConfigFileError:
        """A :class:`ConfigFileError` pointing at ``key`` (or at its value) in this file."""
        line, column = self.position(key, value=value) or (None, None)
        return ConfigFileError(self.path, message, line=line, column=column, key=key or None)


class _Reader:
    """Turns the composed YAML node tree into plain data, recording where each key sits."""

    def __init__(self, path: str, loader: BoundedLoader, environ: Mapping[str, str]) -> None:
        self.keys: dict[str, Position] = {}
        self.values: dict[str, Position] = {}
        self.file = ConfigFile(path, keys=self.keys, values=self.values)
        self.loader, self.environ = loader, environ
        self.expanded: set[str] = set()  # keys whose value used ${VAR}: not a literal secret
        self.problems: list[ConfigFileError] = []
        self.bad: set[str] = set()  # keys already reported, so a None stand-in is not reported
        self._explicit: dict[int, set[int]] = {}
        self._open: set[int] = set()
        self._warned: set[int] = set()  # nodes warned about: an alias does not warn again

    def problem(self, key: str, message: str, mark: yaml.Mark | None) -> None:
        line, column = position(mark) or (None, None)
        self.problems.append(
            ConfigFileError(self.file.path, message, line=line, column=column, key=key or None)
        )
        self.bad.add(key)

    def walk(self, node: yaml.Node, path: tuple[str, ...]) -> Any:
        if id(node) in self._open:
            self.problem(".".join(path), "this YAML alias contains itself", node.start_mark)
            return None
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_TAGS:
            msg = f"the YAML tag {node.tag!r} is not allowed; only plain YAML (safe loader)"
            self.problem(".".join(path), msg, node.start_mark)
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self._child(n, n, (*path, str(i))) for i, n in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._open.discard(id(node))

    def _child(self, key_node: yaml.Node, node: yaml.Node, path: tuple[str, ...]) -> Any:
        dotted = ".".join(path)
        if len(dotted) > MAX_KEY_PATH:
            msg = f"this key's dotted path is {len(dotted):,} characters long (the limit is "
            msg += f"{MAX_KEY_PATH:,}); use shorter keys or nest less"
            raise self.loader.refuse(msg, key_node.start_mark)
        self.keys[dotted] = position(key_node.start_mark) or (1, 1)
        self.values[dotted] = position(node.start_mark) or (1, 1)
        return self.walk(node, path)

    def _mapping(self, node: yaml.MappingNode, path: tuple[str, ...]) -> dict[str, Any]:
        merge_tag = "tag:yaml.org,2002:merge"
        explicit = self._explicit.setdefault(
            id(node), {id(k) for k, _ in node.value if k.tag != merge_tag}
        )
        try:
            self.loader.flatten_mapping(node)  # "<<: *anchor" merge keys
        except yaml.MarkedYAMLError as exc:
            self.problem(".".join(path), f"bad merge key '<<': {exc.problem}", exc.problem_mark)
            return {}
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                msg = "a key must be a name, not a list or a mapping"
                self.problem(".".join(path), msg, key_node.start_mark)
                continue
            name = str(key_node.value)  # as written: a task named 2024 stays "2024"
            dotted = ".".join((*path, name))
            if name in seen and seen[name] in explicit and id(key_node) in explicit:
                msg = f"duplicate key {name!r}; keep one of them"
                self.problem(dotted, msg, key_node.start_mark)
            seen[name] = id(key_node)
            out[name] = value = self._child(key_node, value_node, (*path, name))
            literal = isinstance(value, str | int) and not isinstance(value, bool)
            if is_secret(name) and literal and value != "" and dotted not in self.expanded:
                self.warn_secret(dotted, value_node, "a literal secret")
        return out

    def warn_secret(self, dotted: str, node: yaml.Node, what: str) -> None:
        """Say where a secret is written, never the secret itself."""
        if id(node) in self._warned:
            return
        self._warned.add(id(node))
        line = (self.keys.get(dotted) or position(node.start_mark) or (1, 1))[0]
        msg = f"{self.file.path}:{line}: {dotted or 'the document'} holds {what}; "
        msg += "write ${ENV_VAR} in its place and set it in the environment"
        warnings.warn(SecretInConfigWarning(msg), stacklevel=2)

    def _scalar(self, node: yaml.Node, path: tuple[str, ...]) -> Any:
        dotted = ".".join(path)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            msg = f"{exc.problem}; only plain YAML values are allowed (safe loader)"
            self.problem(dotted, msg, exc.problem_mark or node.start_mark)
            return None
        except (ValueError, OverflowError) as exc:  # 2024-13-45, a 5,000-digit int, !!float x
            kind = node.tag.rpartition(":")[2]
            msg = f"{str(exc).partition(';')[0]}: not a valid {kind} (quote it to keep it text)"
            self.problem(dotted, msg, node.start_mark)
            return None
        if isinstance(value, str) and has_secret(value):
            self.warn_secret(dotted, node, "a password written in the value")
        if not isinstance(value, str) or "$" not in value:
            return value
        try:
            text, used = expand(value, self.environ)
        except ConfigError as exc:
            self.problem(dotted, exc.message, node.start_mark)
            return None
        if used:
            self.expanded.add(dotted)
        if len(path) == 3 and path[0] == "tasks" and path[2] in _TYPED:
            resolve: Callable[[type, str, tuple[bool, bool]], str] = self.loader.resolve
            tag = resolve(yaml.ScalarNode, text, (True, False))  # as if written unquoted
            scalar = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
            try:
                typed = self.loader.construct_object(scalar)
            except (yaml.YAMLError, ValueError, OverflowError) as exc:
                self.problem(dotted, f"{value!r} expands to a bad value: {exc}", node.start_mark)
                return None
            if typed is None:
                msg = f"{value!r} expands to an empty value; set the variable or give a default"
                self.problem(dotted, msg, node.start_mark)
            return typed
        return text

    def explain(self, error: ErrorDetails) -> ConfigFileError:
        """A pydantic error as a message about this file's key, at its line and column."""
        loc = [str(part) for part in error["loc"] if part != "[key]"]
        dotted, kind, value = ".".join(loc), error["type"], error.get("input")
        if kind == "extra_forbidden":
            known = list(_known_keys(loc[:-1]))
            hint = _did_you_mean(loc[-1], known) or "; allowed keys: " + ", ".join(known)
            return self.file.error(dotted, f"unknown key {loc[-1]!r}{hint}")
        if kind == "missing":
            return self.file.error(".".join(loc[:-1]), f"missing required key {loc[-1]!r}")
        expected = _EXPECTED.get(kind, error["msg"])
        return self.file.error(dotted, f"expected {expected}; got {shown(value)}", value=True)


def _known_keys(loc: Sequence[str]) -> Iterable[str]:
    if not loc:
        return _Document.model_fields
    return TaskOverride.model_fields if loc[0] == "tasks" and len(loc) == 2 else ()


def _tasks_by_name(entries: list[Any], reader: _Reader) -> dict[str, Any]:
    """The list form (``- name: sync`` and the keys to override) as the mapping form.

    Positions recorded under ``tasks.<index>`` move to ``tasks.<name>``, so every later
    error reads the same in both forms. A missing or repeated name is an error at its line.
    """
    tasks: dict[str, Any] = {}
    first: dict[str, int] = {}  # name -> index of the entry that names it
    for index, entry in enumerate(entries):
        at = f"tasks.{index}"
        if at in reader.bad:
            continue
        if not isinstance(entry, dict):
            msg = f"expected a mapping ('- name: <task>' and the keys to override); got {shown(entry)}"
            reader.problems.append(reader.file.error(at, msg, value=True))
            continue
        name = entry.get("name")
        if f"{at}.name" in reader.bad:
            continue
        if name is None:
            msg = "missing required key 'name': each entry of the list names the task it overrides"
            reader.problems.append(reader.file.error(at, msg))
            continue
        if isinstance(name, bool) or not isinstance(name, str | int) or name == "":
            msg = f"expected a task name; got {shown(name)}"
            reader.problems.append(reader.file.error(f"{at}.name", msg, value=True))
            continue
        name = str(name)
        if len(name) > _MAX_NAME:  # a task's name is short; each key below would copy it
            msg = f"a task name has at most {_MAX_NAME} characters; this one has {len(name):,}"
            reader.problems.append(reader.file.error(f"{at}.name", msg, value=True))
            continue
        if name in first:
            line = (reader.file.position(f"tasks.{first[name]}.name", value=True) or (0, 0))[0]
            msg = f"duplicate task {name!r}: the entry at line {line} names it too; merge them"
            reader.problems.append(reader.file.error(f"{at}.name", msg, value=True))
            continue
        first[name] = index
        tasks[name] = {key: value for key, value in entry.items() if key != "name"}
    renamed = {str(index): name for name, index in first.items()}

    def moved(key: str) -> str | None:
        parts = key.split(".", 2)
        if len(parts) < 2 or parts[0] != "tasks":
            return key
        name = renamed.get(parts[1])
        return None if name is None else ".".join(("tasks", name, *parts[2:]))

    for table in (reader.keys, reader.values):
        kept = {new: position for key, position in table.items() if (new := moved(key))}
        table.clear()
        table.update(kept)
    reader.bad = {new for key in reader.bad if (new := moved(key))}
    return tasks


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ConfigFile:
    """Read, expand and validate one YAML file (UTF-8, safe loader only).

    :param environ: where ``${VAR}`` is looked up; ``os.environ`` by default.
    :raises ConfigFileErrors: listing every problem of the file, each at its line and key.
    """
    where = str(path)
    try:
        text = read_text(where)
    except (OSError, UnicodeError) as exc:
        msg = f"cannot read the file ({exc}); check the path and that it is UTF-8 text"
        raise ConfigFileErrors([ConfigFileError(where, msg)]) from exc
    except ConfigFileError as exc:
        raise ConfigFileErrors([exc]) from None
    loader = BoundedLoader(text, where)
    reader = _Reader(where, loader, os.environ if environ is None else environ)
    try:
        root = loader.get_single_node()
        data = {} if root is None else reader.walk(root, ())
    except yaml.YAMLError as exc:
        raise ConfigFileErrors([syntax_error(where, exc)]) from exc
    except ConfigFileError as exc:  # a limit
        raise ConfigFileErrors([exc]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        msg = f"the top level must be a mapping with 'tasks:' and/or 'alerts:'; got {_kind(data)}"
        raise ConfigFileErrors([ConfigFileError(where, msg, line=1, column=1)])
    for section in ("tasks", "alerts"):
        if section in data and data[section] is None:  # every entry commented out
            del data[section]
    if isinstance(data.get("tasks"), list):
        data["tasks"] = _tasks_by_name(data["tasks"], reader)
    tasks = data.get("tasks")
    for name, entry in tasks.items() if isinstance(tasks, dict) else ():
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            dotted = f"tasks.{name}.{key}"
            if key in _CODE_ONLY and dotted not in reader.bad:
                reader.problems.append(reader.file.error(dotted, _CODE_ONLY[key]))
                reader.bad.add(dotted)
            known = key in TaskOverride.model_fields and key not in _NULLABLE
            if value is None and known and dotted not in reader.bad:
                msg = "null is not a value here; remove the line to keep the task's own value"
                reader.problems.append(reader.file.error(dotted, msg, value=True))
        if "interval_seconds" in entry and "cron" in entry:
            msg = "set either interval_seconds or cron, not both; remove one"
            reader.problems.append(reader.file.error(f"tasks.{name}.cron", msg))
    document = _Document()
    try:
        document = _Document.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problem = reader.explain(error)
            key = problem.key or ""
            if not any(key == bad or key.startswith(bad + ".") for bad in reader.bad):
                reader.problems.append(problem)
    if reader.problems:
        reader.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise ConfigFileErrors(reader.problems)
    return ConfigFile(where, document.tasks, tuple(document.alerts), reader.keys, reader.values)
