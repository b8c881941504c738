"""The ``xtasks`` entry point of the alerts add-on: ``kind: email`` and ``kind: webhook``.

Importing this module imports neither aiosmtplib nor httpx: the factories import their
alerter when a configuration uses it, so a missing library is reported for the entry that
needs it (with the ``pip install`` command), not when plugins load.
"""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

from xtasks import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks.abc import Alerter
    from xtasks.hookspecs import RegisterAlerter

__all__ = ["OptionError", "xtasks_add_alerters"]


class OptionError(TypeError):
    """An unknown option; ``option`` names it, so the core's error points at its line."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


@hookimpl
def xtasks_add_alerters(register: RegisterAlerter) -> None:
    """Register ``email`` (:class:`~xtasks_alerts.EmailAlerter`) and ``webhook``
    (:class:`~xtasks_alerts.WebhookAlerter`); YAML options are their arguments."""
    register("email", email)
    register("webhook", webhook)


def email(**options: Any) -> Alerter:
    """``{kind: email, host, port, sender, recipients, username, password_env, ...}``."""
    from ._email import EmailAlerter

    return _build("email", EmailAlerter, options)


def webhook(**options: Any) -> Alerter:
    """``{kind: webhook, url, secret, allow_private, timeout, retries}``."""
    from ._webhook import WebhookAlerter

    return _build("webhook", WebhookAlerter, options)


def _build(kind: str, cls: Callable[..., Alerter], options: dict[str, Any]) -> Alerter:
    """``cls(**options)``, with an unknown or missing option named plainly, not as a
    ``TypeError`` about ``__init__``."""
    params = inspect.signature(cls).parameters
    known = [name for name in params if name != "self"]
    for key in options:
        if key not in params:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OptionError(
                f"unknown option {key!r} for kind {kind!r}{hint} (options: {', '.join(known)})",
                key,
            )
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and name not in options
    ]
    if missing:
        raise TypeError(f"kind {kind!r} needs the option(s) {', '.join(map(repr, missing))}")
    return cls(**options)
