"""The ``xtasks`` command (also ``python -m xtasks``).

Thin: it only calls the public API. Signals are handled here and nowhere else in the
library: ``run`` stops gracefully on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from importlib.metadata import version
from typing import TYPE_CHECKING

import anyio

from ._errors import ConfigError, XtasksError
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

_log = logging.getLogger("xtasks.cli")


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


async def _run(scheduler: Scheduler) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with scheduler:
            _log.info("xtasks running %d task(s); Ctrl-C to stop", len(scheduler.tasks))
            async for signum in signals:
                _log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xtasks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xtasks {version('xtasks')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run a scheduler headless until SIGINT/SIGTERM, then stop gracefully"
    )
    run.add_argument("target", help="the Scheduler to run, as 'package.module:attribute'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xtasks`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        scheduler = load_scheduler(args.target)
        anyio.run(_run, scheduler)
    except XtasksError as exc:
        print(f"xtasks: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0
