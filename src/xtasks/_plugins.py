"""Plugin discovery and collection: entry points in; tasks, alerter kinds, stores out.

A fresh :class:`pluggy.PluginManager` per scheduler, never a module-level one. Built-in
features are registered as plugins first (dogfooding the hooks), then the ``xtasks``
entry points. Every contribution is attributed to the plugin that made it, so an error
names the distribution and entry point; with ``strict=False`` a broken plugin is left out
whole and reported as degraded instead of stopping the scheduler.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._errors import _PLUGIN_SELECTION_HINT, PluginError, XtasksError
from ._task import Task
from .stores import StoreRegistry
from .stores._registry import check_scheme

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from importlib.metadata import EntryPoint

    from .abc import Alerter, Executor
    from .stores import StoreFactory

__all__ = ["LoadedPlugins", "PluginOrigin", "load_plugins"]

_log = logging.getLogger("xtasks.plugins")

#: Entry-point group that plugins declare.
ENTRY_POINT_GROUP = "xtasks"
#: Built-in plugin modules, registered before any entry point.
BUILTIN_PLUGINS = ("xtasks._builtin",)


@dataclass(frozen=True, slots=True)
class PluginOrigin:
    """Where a plugin came from, for messages, ``xtasks list`` and ``/manager/health``."""

    name: str  #: the entry point's name, or the built-in module's
    distribution: str | None = None  #: ``"name version"`` of the installed distribution
    entry_point: str | None = None  #: ``"name = module:object"``
    config_path: Path | None = None  #: its ``config.yaml``, when it ships one

    def describe(self) -> str:
        return self.distribution or self.name

    def label(self) -> str:
        """``plugin xcore-billing 1.0 (entry point 'billing = xcore_billing.tasks')``."""
        if self.distribution is None:
            return f"plugin {self.entry_point or self.name}"
        where = f" (entry point {self.entry_point!r})" if self.entry_point else ""
        return f"plugin {self.distribution}{where}"


@dataclass(slots=True)
class LoadedPlugins:
    """What the plugins contributed, and what went wrong."""

    manager: pluggy.PluginManager
    plugins: list[PluginOrigin] = field(default_factory=list)
    tasks: list[tuple[Task, PluginOrigin]] = field(default_factory=list)
    alerter_kinds: dict[str, tuple[Callable[..., Alerter], PluginOrigin]] = field(
        default_factory=dict
    )
    #: Store factories by URL scheme, the built-ins' first.
    stores: StoreRegistry = field(default_factory=StoreRegistry)
    #: Executors the plugins registered, with who registered each (for messages).
    executors: list[tuple[Executor, str]] = field(default_factory=list)
    problems: list[XtasksError] = field(default_factory=list)
    degraded: list[PluginOrigin] = field(default_factory=list)

    @property
    def config_paths(self) -> list[Path]:
        """The ``config.yaml`` of every plugin that loaded, in load order."""
        return [
            p.config_path
            for p in self.plugins
            if p.config_path is not None and p not in self.degraded
        ]


def load_plugins(
    selection: bool | Iterable[object],
    *,
    environ: Mapping[str, str] | None = None,
) -> LoadedPlugins:
    """Build a plugin manager, register plugins, and collect their contributions.

    :param selection: ``True`` discovers every ``xtasks`` entry point; ``False`` loads
        none; an iterable loads exactly those: plugin objects or modules, or names of
        entry points (``"billing"``) or distributions (``"xcore-billing"``).
    :param environ: where ``XTASKS_DISABLE_PLUGIN_AUTOLOAD=1``, ``XTASKS_PLUGINS=a,b``
        and ``XTASKS_TRACE_PLUGINS=1`` are read; ``os.environ`` by default.
    Nothing raises: a broken plugin is unregistered, listed in ``degraded`` and its
    error in ``problems``; the caller decides whether that stops the scheduler.
    """
    env = os.environ if environ is None else environ
    pm = pluggy.PluginManager("xtasks")
    pm.add_hookspecs(hookspecs)
    if env.get("XTASKS_TRACE_PLUGINS") == "1":
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    loaded = LoadedPlugins(manager=pm)
    for module_name in BUILTIN_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        _register(loaded, module, PluginOrigin(module_name))

    wanted: set[str] | None = None
    if env.get("XTASKS_PLUGINS"):
        wanted = {n.strip() for n in env["XTASKS_PLUGINS"].split(",") if n.strip()}
    if selection is True:
        if wanted is not None:
            _log.info("XTASKS_PLUGINS=%s: loading only these plugins", env["XTASKS_PLUGINS"])
            _load_named(loaded, wanted, "XTASKS_PLUGINS")
        elif env.get("XTASKS_DISABLE_PLUGIN_AUTOLOAD") == "1":
            _log.info("XTASKS_DISABLE_PLUGIN_AUTOLOAD=1: installed plugins are not loaded")
        else:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                _load_entry_point(loaded, ep)
    elif selection is not False:
        names = set()
        for item in selection:
            if isinstance(item, str):
                names.add(item)
            else:
                _register(
                    loaded, item, PluginOrigin(_object_name(item), config_path=_config_beside(item))
                )
        if names:
            _load_named(loaded, names, "Scheduler(plugins=[...])")

    for origin, plugin in list(_registered(loaded)):
        _collect(loaded, origin, plugin)
    return loaded


# --- registration -----------------------------------------------------------------------


def _load_named(loaded: LoadedPlugins, names: set[str], source: str) -> None:
    """Load the entry points named (or whose distribution is named) in ``names``; a name
    that matches none is a problem, so a typo does not silently start without a plugin."""
    matched: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _matches(ep, names):
            matched |= {ep.name, _dist_name(ep) or ""}
            _load_entry_point(loaded, ep)
    for missing in sorted(names - matched):
        loaded.problems.append(
            PluginError(
                f"no installed plugin is named {missing!r} (in {source}); check the name "
                "(an entry point's or a distribution's) with `pip list` or `xtasks list`"
            )
        )


def _load_entry_point(loaded: LoadedPlugins, ep: EntryPoint) -> None:
    dist = _dist_label(ep)
    label = f"{ep.name} = {ep.value}"
    origin = PluginOrigin(ep.name, distribution=dist, entry_point=label)
    try:
        plugin = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported
        _fail(
            loaded,
            origin,
            PluginError(
                f"cannot import it: {type(exc).__name__}: {exc}; fix the plugin or "
                "uninstall it (or start with strict_plugins=False to skip it)",
                distribution=dist,
                entry_point=label,
            ),
            cause=exc,
        )
        return
    origin = PluginOrigin(
        ep.name, distribution=dist, entry_point=label, config_path=_config_beside(plugin)
    )
    _register(loaded, plugin, origin)


def _register(loaded: LoadedPlugins, plugin: object, origin: PluginOrigin) -> None:
    pm = loaded.manager
    if pm.has_plugin(origin.name):
        other = _origin_of(loaded, origin.name)
        _fail(
            loaded,
            origin,
            PluginError(
                f"another plugin is already registered as {origin.name!r}"
                + (f" (from {other.describe()})" if other else "")
                + "; rename one of the entry points",
                distribution=origin.distribution,
                entry_point=origin.entry_point,
            ),
        )
        return
    try:
        pm.register(plugin, name=origin.name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        _fail(
            loaded,
            origin,
            PluginError(
                f"invalid plugin: {exc}",
                distribution=origin.distribution,
                entry_point=origin.entry_point,
            ),
            cause=exc,
        )
        return
    loaded.plugins.append(origin)


def _registered(loaded: LoadedPlugins) -> Iterable[tuple[PluginOrigin, object]]:
    for origin in loaded.plugins:
        plugin = loaded.manager.get_plugin(origin.name)
        if plugin is not None:
            yield origin, plugin


# --- contributions ----------------------------------------------------------------------


def _collect(loaded: LoadedPlugins, origin: PluginOrigin, plugin: object) -> None:
    """Call this plugin's contribution hooks, attributing everything to ``origin``."""
    from ._seed import task_from_seed

    tasks: list[Task] = []
    kinds: dict[str, Callable[..., Alerter]] = {}
    stores: dict[str, tuple[StoreFactory, str | None]] = {}
    executors: list[Executor] = []
    problems: list[XtasksError] = []

    def where(hook: str | None = None) -> dict[str, Any]:
        return {
            "distribution": origin.distribution,
            "entry_point": origin.entry_point or origin.name,
            "hook": hook,
        }

    def register_task(task: object, /) -> None:
        if isinstance(task, Task):
            tasks.append(task)
        elif isinstance(task, dict):
            tasks.append(task_from_seed(task, origin=f"{origin.describe()} (xtasks_add_tasks)"))
        else:
            raise PluginError(
                f"register() takes an xtasks.Task or a seed-format dict, got {type(task).__name__}",
                **where("xtasks_add_tasks"),
            )

    def register_alerter(kind: object, factory: object, /) -> None:
        if not isinstance(kind, str) or not kind or not callable(factory):
            raise PluginError(
                f"register() takes a kind name and a factory, got {kind!r}, {factory!r}",
                **where("xtasks_add_alerters"),
            )
        kinds[kind] = factory

    def register_store(scheme: object, factory: object, /, *, example: str | None = None) -> None:
        try:
            key, store_factory = check_scheme(scheme, factory)
        except PluginError as exc:
            raise PluginError(exc.message, **where("xtasks_add_stores")) from None
        if key in stores:
            raise PluginError(
                f"registers the store scheme {key + '://'!r} twice", **where("xtasks_add_stores")
            )
        stores[key] = (store_factory, example)

    def register_executor(executor: object, /) -> None:
        from .abc import Executor

        if not isinstance(executor, Executor):
            raise PluginError(
                f"register() takes an xtasks.abc.Executor, got {type(executor).__name__}",
                **where("xtasks_add_executors"),
            )
        executors.append(executor)

    seed = getattr(plugin, "PLUGIN_TASKS", None)
    if seed is not None:
        if not isinstance(seed, list | tuple):
            problems.append(
                PluginError(
                    f"PLUGIN_TASKS must be a list of dicts, got {type(seed).__name__}", **where()
                )
            )
        else:
            for index, entry in enumerate(seed):
                try:
                    tasks.append(
                        task_from_seed(
                            entry,
                            origin=f"PLUGIN_TASKS[{index}] of {origin.entry_point or origin.name}",
                        )
                    )
                except XtasksError as exc:
                    problems.append(PluginError(str(exc), **where()))

    for hook, callback in (
        ("xtasks_add_tasks", register_task),
        ("xtasks_add_alerters", register_alerter),
        ("xtasks_add_stores", register_store),
        ("xtasks_add_executors", register_executor),
    ):
        caller = getattr(loaded.manager.hook, hook)
        for impl in caller.get_hookimpls():
            if impl.plugin_name != origin.name:
                continue
            try:
                result = impl.function(*([callback] if impl.argnames else []))
            except XtasksError as exc:
                problems.append(
                    exc if isinstance(exc, PluginError) else PluginError(str(exc), **where(hook))
                )
                continue
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported, not a crash
                err = PluginError(f"raised {type(exc).__name__}: {exc}", **where(hook))
                err.__cause__ = exc
                problems.append(err)
                continue
            if result is not None:
                problems.append(
                    PluginError(
                        f"returned {type(result).__name__}; it must return None and call "
                        "register() instead",
                        **where(hook),
                    )
                )

    if problems:
        for problem in problems:
            _fail(loaded, origin, problem)
        return
    names = {t.name: o for t, o in loaded.tasks}
    own: set[str] = set()
    for task in tasks:
        other = names.get(task.name)
        if other is None and task.name not in own:
            own.add(task.name)
            continue
        if other is None:
            error = PluginError(f"contributes the task {task.name!r} twice; keep one", **where())
        else:
            error = PluginError(
                f"task {task.name!r} is also contributed by {other.label()}; task names must "
                f"be unique: rename one, or load only one of the two plugins: "
                f"{_PLUGIN_SELECTION_HINT}",
                **where(),
            )
        _fail(loaded, origin, error)
        return
    for scheme in stores:
        owner = loaded.stores.origin(scheme)
        if owner is not None:
            _fail(
                loaded,
                origin,
                PluginError(
                    f"store scheme {scheme + '://'!r} is also registered by {owner}; "
                    "a scheme has one backend: uninstall one of the two plugins (or "
                    "select plugins with XTASKS_PLUGINS)",
                    **where("xtasks_add_stores"),
                ),
            )
            return
    loaded.tasks.extend((t, origin) for t in tasks)
    for kind, factory in kinds.items():
        loaded.alerter_kinds[kind] = (factory, origin)
    label = origin.describe() + (f" ({origin.entry_point})" if origin.entry_point else "")
    for scheme, (store_factory, example) in stores.items():
        loaded.stores.register(scheme, store_factory, example=example, origin=label)
    loaded.executors.extend((executor, label) for executor in executors)


def _fail(
    loaded: LoadedPlugins,
    origin: PluginOrigin,
    error: XtasksError,
    cause: BaseException | None = None,
) -> None:
    if cause is not None:
        error.__cause__ = cause
    loaded.problems.append(error)
    if origin not in loaded.degraded:
        loaded.degraded.append(origin)
    if loaded.manager.has_plugin(origin.name):
        loaded.manager.unregister(name=origin.name)
    _log.error("%s", error)


# --- small helpers ----------------------------------------------------------------------


def _dist_name(ep: EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def _dist_label(ep: EntryPoint) -> str | None:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else None


def _matches(ep: EntryPoint, names: set[str]) -> bool:
    dist = _dist_name(ep)
    return ep.name in names or (dist is not None and dist in names)


def _origin_of(loaded: LoadedPlugins, name: str) -> PluginOrigin | None:
    return next((o for o in loaded.plugins if o.name == name), None)


def _object_name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or f"{type(plugin).__qualname__}@{id(plugin):x}"


def _config_beside(plugin: object) -> Path | None:
    """A ``config.yaml`` in the directory of the module that defines ``plugin``."""
    module = plugin if inspect.ismodule(plugin) else inspect.getmodule(plugin)
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    candidate = Path(filename).resolve().parent / "config.yaml"
    return candidate if candidate.is_file() else None


def _trace_before(
    hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
) -> None:
    _log.info("calling %s on %s", hook_name, [i.plugin_name for i in hook_impls])


def _trace_after(
    outcome: pluggy.Result[Any],
    hook_name: str,
    hook_impls: Sequence[pluggy.HookImpl],
    kwargs: Mapping[str, Any],
) -> None:
    _log.info("%s returned", hook_name)
