"""The ``xtasks`` command (also ``python -m xtasks``): list, check, run and serve schedulers.

Thin: it only calls the public API. Signals are handled here and nowhere else in the
library: ``run``, ``serve`` and ``demo`` stop gracefully on SIGINT or SIGTERM. ``serve``
and ``demo`` import the web stack (the ``xtasks-fastapi`` distribution) only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import secrets
import signal
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, distribution, entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ._errors import ConfigError, XtasksError
from ._events import RunChanged
from ._runs import RunStatus
from ._scheduler import Scheduler
from .stores import redact_url

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

#: ``serve`` and ``demo``: the manager token (read and act); generated when unset.
TOKEN_ENV = "XTASKS_MANAGER_TOKEN"
#: ``serve`` and ``demo``: comma-separated read-only tokens.
READ_TOKENS_ENV = "XTASKS_MANAGER_READ_TOKENS"

#: ``demo``: its store, and the distribution whose tasks it shows.
DEMO_STORE = "sqlite:///xtasks-demo.db"
DEMO_PLUGIN = "xtasks-example-plugin"
#: xtasks' add-on distributions that register plugins (``kind: email``, ``kind: webhook``).
_ADD_ON_PLUGINS = frozenset({"xtasks-alerts"})


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


def _build(
    args: argparse.Namespace, *, strict: bool = True, plugins: bool | list[str] = True
) -> Scheduler:
    """The application's Scheduler (``--app``), or one built from the plugins."""
    app = args.app or getattr(args, "target", None)
    if args.app and getattr(args, "target", None):
        raise _UsageError("give the application's Scheduler once: --app or APP, not both")
    if app is None:
        store = args.store or DEFAULT_STORE
        _log.info("store: %s", redact_url(store))  # a URL may carry a password
        return Scheduler(store, plugins=plugins, config=args.config, strict_plugins=strict)
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


#: Final statuses the scheduler's run log (logger ``xtasks.runs``) already reports.
_LOGGED_BY_THE_RUN_LOG = frozenset({RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.MISSED})


def _log_final(event: Event) -> None:
    """One line per finished run; failures, skips and misses are the run log's."""
    if (
        type(event) is RunChanged
        and event.record.status.is_final
        and event.record.status not in _LOGGED_BY_THE_RUN_LOG
    ):
        r = event.record
        why = f" ({r.reason})" if r.reason else ""
        error = f": {r.error.short()}" if r.error else ""  # bounded: 1,024 characters
        fields = (r.id, r.task, r.status.value, why, r.attempts, r.cause.value, error)
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tokens(host: str) -> tuple[str, bool, list[str]]:
    """The manager token, whether it was generated, and the read-only tokens."""
    reads = [t.strip() for t in os.environ.get(READ_TOKENS_ENV, "").split(",") if t.strip()]
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, False, reads
    if not _is_loopback(host):
        raise _UsageError(
            f"--host {host} is not a loopback address: set {TOKEN_ENV} (and optionally "
            f"{READ_TOKENS_ENV}) to serve the manager beyond this machine; a generated "
            "token would be printed to the terminal, and from there often to log files"
        )
    return secrets.token_urlsafe(32), True, reads


def _web_stack(command: str) -> Any:
    """The ``xtasks_fastapi`` package, or a usage error naming the distribution to install."""
    try:
        import xtasks_fastapi  # here: the core never imports the web stack
    except ImportError as exc:
        raise _UsageError(
            f"`xtasks {command}` needs the web part of xtasks, the xtasks-fastapi distribution "
            f"(FastAPI and uvicorn come with it): {_add_on_install_hint('xtasks-fastapi')} ({exc})"
        ) from None
    return xtasks_fastapi


def _add_on_install_hint(name: str) -> str:
    """``pip install NAME``, or the add-on's directory when this core runs from a clone."""
    source = Path(__file__).resolve().parents[2] / "distributions" / name
    if (source / "pyproject.toml").is_file():
        return f"pip install {source}"
    return f"pip install {name}"


def _serve(args: argparse.Namespace, scheduler: Scheduler) -> int:
    """Serve ``scheduler`` and its ``/manager`` over HTTP until SIGINT or SIGTERM."""
    manager = _web_stack(args.command)
    token, generated, reads = _tokens(args.host)
    problems = scheduler.check()
    if problems:
        _print_problems(problems)
        raise _UsageError(f"{len(problems)} problem(s): the scheduler cannot start")
    host = f"[{args.host}]" if ":" in args.host else args.host

    def announce(port: int) -> None:
        _say(f"xtasks manager: http://{host}:{port}/manager/")
        if generated:
            _say(f"token: {token}")
            _say(f"  (generated for this run; set {TOKEN_ENV} to choose it)")
        else:
            _say(f"token: from ${TOKEN_ENV}")
        _say("Ctrl-C to stop", file=sys.stdout)
        sys.stdout.flush()

    app = manager.manager_app(scheduler, auth=manager.bearer_token(token, read_tokens=reads))
    server = manager.ManagerServer(
        scheduler, app, host=args.host, port=args.port, on_listening=announce
    )
    scheduler.subscribe(_log_final)
    code: int = anyio.run(_serve_until_signal, server)
    return code


async def _serve_until_signal(server: Any) -> int:
    async def stop_on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if server.should_exit:
                    _log.warning("received %s again: stopping now, without waiting", name)
                    server.stop(now=True)
                else:
                    _log.info("received %s: stopping gracefully", name)
                    server.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal)
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn's way to report a failed start-up (logged)
            return exc.code if isinstance(exc.code, int) else 1
        finally:
            tg.cancel_scope.cancel()
    return 0


def _demo_install_hint() -> str:
    source = Path(__file__).resolve().parents[2] / "examples" / "xtasks-example-plugin"
    if (source / "pyproject.toml").is_file():
        return f"pip install {source}"
    return "pip install ./examples/xtasks-example-plugin  (from a clone of the xtasks repository)"


def _demo(args: argparse.Namespace) -> int:
    try:
        distribution(DEMO_PLUGIN)
    except PackageNotFoundError:
        raise _UsageError(
            f"`xtasks demo` shows the example plugin, which is not installed: "
            f"{_demo_install_hint()}"
        ) from None
    _web_stack("demo")
    args.store = args.store or DEMO_STORE
    # What the help says: the example plugin's tasks, not those of every installed plugin
    # (nor XTASKS_PLUGINS's), with xtasks' own add-ons when installed (alerter kinds, no tasks).
    installed = {ep.dist.name for ep in entry_points(group="xtasks") if ep.dist}
    add_ons = sorted(installed & _ADD_ON_PLUGINS)
    return _serve(args, _build(args, plugins=[DEMO_PLUGIN, *add_ons]))


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
    http = argparse.ArgumentParser(add_help=False)
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    http.add_argument(
        "--port", type=int, default=8000, help="port to bind; 0 picks a free one (default: 8000)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tokens = (
        f"The manager token comes from ${TOKEN_ENV} (else one is generated and printed); "
        f"${READ_TOKENS_ENV} may hold comma-separated read-only tokens."
    )
    helps = {
        "list": ("list tasks: origin, trigger, next fire, priority, dependencies", ""),
        "check": ("load every plugin and config file; list every problem; exit 1 if any", ""),
        "run": ("run the scheduler headless until SIGINT/SIGTERM, then stop gracefully", ""),
        "serve": ("run the scheduler with the /manager HTTP API and page", tokens),
        "demo": (f"serve the example plugin's tasks on {DEMO_STORE}", tokens),
    }
    sub = {
        n: commands.add_parser(
            n,
            parents=[common if n != "demo" else http] + ([http] if n == "serve" else []),
            help=h,
            description=f"{h}. {more}".rstrip(". ") if more else h,
        )
        for n, (h, more) in helps.items()
    }
    for name in ("run", "serve"):
        sub[name].add_argument("target", nargs="?", metavar="APP", help="the same as --app")
    sub["demo"].add_argument("--store", metavar="URL", help=f"store URL (default: {DEMO_STORE})")
    sub["demo"].add_argument("--config", metavar="FILE", help="the application's YAML file")
    sub["demo"].set_defaults(app=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xtasks`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    serving = args.command in ("run", "serve", "demo")
    quiet = logging.INFO if serving else logging.CRITICAL  # list and check print problems
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "serve":
            _web_stack("serve")  # before the scheduler is built: a clear error comes first
            return _serve(args, _build(args))
        scheduler = _build(args)
        if args.command == "list":
            return _list(scheduler)
        anyio.run(_run, scheduler)
    except XtasksError as exc:
        _say(f"xtasks: error: {exc}", file=sys.stderr)
        return 2
    return 0
