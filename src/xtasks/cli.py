"""The ``xtasks`` command (also ``python -m xtasks``): list, check and run schedulers.

Thin: it only calls the public API. Signals are handled here and nowhere else in the
library: ``run`` stops gracefully on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, TextIO

import anyio

from ._errors import ConfigError, XtasksError
from ._events import RunChanged
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._events import Event
    from ._task import Task

__all__ = ["main"]

_log = logging.getLogger("xtasks.cli")

#: ``ConfigError.field`` of the errors that are about the command line, not the setup.
_USAGE = frozenset({"target", "store"})

#: Environment variables that narrow plugin discovery, and what they do.
_ENV_SWITCHES = {
    "XTASKS_DISABLE_PLUGIN_AUTOLOAD": "plugins are not discovered",
    "XTASKS_PLUGINS": "only the plugins it names are loaded",
}

#: The store used when neither ``--store`` nor ``--app`` is given.
DEFAULT_STORE = "sqlite:///xtasks.db"


class _UsageError(XtasksError):
    """The command line contradicts itself."""


def load_scheduler(target: str) -> Scheduler:
    """Import ``"package.module:attribute"`` and return the Scheduler it names.

    :raises ConfigError: the target is malformed, does not import, or is not a Scheduler.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"expected 'package.module:attribute' naming a Scheduler, got {target!r}",
            field="target",
        )
    sys.path.insert(0, "")  # like `python -m`: the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}", field="target") from exc
    finally:
        sys.path.remove("")
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r}", field="target"
            ) from None
    if not isinstance(obj, Scheduler):
        raise ConfigError(
            f"{target!r} is a {type(obj).__name__}, not an xtasks.Scheduler", field="target"
        )
    return obj


def _build(args: argparse.Namespace, *, strict: bool = True) -> Scheduler:
    """The application's Scheduler (``--app``), or one built from the plugins."""
    app = args.app or getattr(args, "target", None)
    if args.app and getattr(args, "target", None):
        raise _UsageError("give the application's Scheduler once: --app or APP, not both")
    if app is None:
        store = args.store or DEFAULT_STORE
        return Scheduler(store, plugins=True, config=args.config, strict_plugins=strict)
    for option, value in (("--store", args.store), ("--config", args.config)):
        if value is not None:
            raise _UsageError(
                f"{option} is given by the app: {app} builds its own Scheduler; "
                f"drop {option}, or drop --app to build one from the installed plugins"
            )
    return load_scheduler(app)


def _say(text: str = "", *, file: TextIO | None = None) -> None:
    print(text, file=file or sys.stdout)


def _next_fire(task: Task, now: datetime) -> str:
    if task.trigger is None:
        return "on demand"
    if not task.enabled:
        return "disabled"
    fire = task.trigger.next_fire(now)
    return fire.isoformat(timespec="seconds") if fire is not None else "never again"


def _list(scheduler: Scheduler) -> int:
    if not scheduler.tasks:
        _say(
            "no tasks.\nTasks come from plugins: installed packages with an entry point in "
            "the group 'xtasks'\n(from a clone of xtasks, try: pip install "
            "./examples/xtasks-example-plugin),\nor from an application's own Scheduler: "
            "xtasks list --app package.module:attribute"
        )
        for var, effect in _ENV_SWITCHES.items():
            if os.environ.get(var):
                _say(f"{var}={os.environ[var]} is set: {effect}")
        return 0
    now = datetime.now(UTC)
    header = ("NAME", "ORIGIN", "TRIGGER", "NEXT FIRE (UTC)", "PRIORITY", "DEPENDS ON")
    rows = [header]
    for name in sorted(scheduler.tasks):
        task = scheduler.tasks[name]
        rows.append(
            (
                name,
                origin.describe() if (origin := scheduler.task_origins.get(name)) else "app",
                task.trigger.describe() if task.trigger is not None else "none",
                _next_fire(task, now),
                task.priority.value,
                ", ".join(task.depends_on) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        scheduler = _build(args, strict=False)
    except XtasksError as exc:  # an --app whose strict Scheduler refused to be built
        if isinstance(exc, _UsageError) or (isinstance(exc, ConfigError) and exc.field in _USAGE):
            raise
        problems = getattr(exc, "problems", None) or [exc]
        _print_problems(problems)
        _say(f"{len(problems)} problem(s): the scheduler cannot be built")
        return 1
    problems = scheduler.check()
    builtin = [p for p in scheduler.plugins if p.name.startswith("xtasks.") and not p.entry_point]
    plugins = [p for p in scheduler.plugins if p not in (*scheduler.degraded, *builtin)]
    summary = f"{len(scheduler.tasks)} task(s) from {len(plugins)} plugin(s)"
    _print_problems(problems)
    for origin in scheduler.degraded:
        where = f" ({origin.entry_point})" if origin.entry_point else ""
        _say(f"degraded: {origin.describe()}{where} was left out")
    if problems:
        _say(f"{len(problems)} problem(s) would stop the scheduler; loaded: {summary}")
        return 1
    _say(f"ok: {summary}")
    return 0


def _print_problems(problems: Sequence[XtasksError]) -> None:
    for number, problem in enumerate(problems, 1):
        text = str(problem).replace("\n", "\n    ")
        _say(f"problem {number}/{len(problems)}: {type(problem).__name__}\n    {text}\n")


def _log_final(event: Event) -> None:
    if type(event) is RunChanged and event.record.status.is_final:
        r = event.record
        why = f" ({r.reason})" if r.reason else ""
        error = f": {r.error.type}: {r.error.message}" if r.error else ""
        fields = (r.id, r.task, r.status.value, why, r.attempts, r.trigger.value, error)
        _log.info("run %s of %r %s%s after %d attempt(s) [%s]%s", *fields)


async def _run(scheduler: Scheduler) -> None:
    scheduler.subscribe(_log_final)
    if not scheduler.tasks:
        _log.warning("no tasks to run: `xtasks list` explains where tasks come from")
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with scheduler:
            _log.info("xtasks running %d task(s); Ctrl-C to stop", len(scheduler.tasks))
            async for signum in signals:
                _log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                return


def _parser() -> argparse.ArgumentParser:
    about = "List, check and run xtasks schedulers: the installed plugins' or an app's own."
    parser = argparse.ArgumentParser(prog="xtasks", description=about)
    parser.add_argument("--version", action="version", version=f"xtasks {version('xtasks')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="the application's own Scheduler, as 'package.module:attribute' "
        "(default: build one from the installed plugins)",
    )
    common.add_argument("--store", metavar="URL", help=f"store URL (default: {DEFAULT_STORE})")
    common.add_argument(
        "--config", metavar="FILE", help="the application's YAML file (default: $XTASKS_CONFIG)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "list": "list tasks: origin, trigger, next fire, priority, dependencies",
        "check": "load every plugin and config file; list every problem; exit 1 if any",
        "run": "run the scheduler headless until SIGINT/SIGTERM, then stop gracefully",
    }
    sub = {
        n: commands.add_parser(n, parents=[common], help=h, description=h) for n, h in helps.items()
    }
    sub["run"].add_argument("target", nargs="?", metavar="APP", help="the same as --app")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xtasks`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    quiet = logging.INFO if args.command == "run" else logging.CRITICAL  # they print problems
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "check":
            return _check(args)
        scheduler = _build(args)
        if args.command == "list":
            return _list(scheduler)
        anyio.run(_run, scheduler)
    except XtasksError as exc:
        _say(f"xtasks: error: {exc}", file=sys.stderr)
        return 2
    return 0
