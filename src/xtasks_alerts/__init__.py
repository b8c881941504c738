"""Alerts that reach people: :class:`EmailAlerter` (SMTP) and :class:`WebhookAlerter`
(signed HTTP POSTs).

Installed with ``pip install xtasks-alerts``, the package also registers the alerter
kinds ``email`` and ``webhook`` through the ``xtasks`` entry point, so a configuration
file can use them::

    alerts:
      - kind: email
        host: smtp.example.com
        port: 587
        sender: xtasks@example.com
        recipients: [ops@example.com]
        username: xtasks
        password_env: SMTP_PASSWORD
      - kind: webhook
        url: https://hooks.example.com/xtasks
        secret: ${HOOK_SECRET}

The classes are imported on first use, so importing the package never needs aiosmtplib
or httpx; building an alerter without its library says what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._email import EmailAlerter as EmailAlerter
    from ._webhook import WebhookAlerter as WebhookAlerter

__all__ = ["EmailAlerter", "WebhookAlerter"]

_WHERE = {"EmailAlerter": "._email", "WebhookAlerter": "._webhook"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
