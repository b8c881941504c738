"""``EmailAlerter``: alerts by SMTP (aiosmtplib), over verified TLS by default.

Security rules, each checked by the tests against a real local SMTP server:

- certificates are verified (the system's CAs, or exactly the ``ca_file`` given); turning
  verification off must be explicit, and logs a warning when the alerter is built;
- credentials never travel in clear: ``username`` needs STARTTLS or implicit TLS, and a
  server that does not offer STARTTLS fails the send instead of being talked to in clear;
- the password is read from the environment variable ``password_env`` names, when a mail
  is sent; it is never stored on the object, shown in ``repr`` or put in an error.

aiosmtplib speaks asyncio. Under another anyio backend (trio) a send runs its own asyncio
loop in a worker thread; every step is bounded by ``smtp_timeout``, so that thread ends.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - aiosmtplib is asyncio-only; see _deliver_anywhere
import logging
import os
import re
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread

from xtasks.abc import Alerter
from xtasks.events import AlertKind

from ._render import html_body, subject, text_body

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xtasks.events import Alert

__all__ = ["EmailAlertError", "EmailAlerter"]

_log = logging.getLogger("xtasks.alerts")

#: A whole send (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT..., DATA, QUIT) ends within
#: this many ``smtp_timeout``\ s, whatever the server does.
SEND_BUDGET = 4

_INSTALL_HINT = "pip install xtasks-alerts  (the distribution that brings it)"
_ADDR = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EmailAlertError(RuntimeError):
    """A mail could not be sent; the message says why and never holds the password."""


def _aiosmtplib() -> Any:
    try:
        import aiosmtplib
    except ImportError as exc:
        msg = f"EmailAlerter needs aiosmtplib, which is not installed: {_INSTALL_HINT}"
        raise ImportError(msg, name="aiosmtplib") from exc
    return aiosmtplib


def _address(value: object, what: str) -> tuple[str, str]:
    """``(as written, bare address)`` for ``"ops@example.com"`` or ``"Ops <ops@…>"``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string like 'ops@example.com', got {value!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} {value!r} must not contain line breaks")
    _, bare = parseaddr(value)
    if not _ADDR.fullmatch(bare):
        raise ValueError(f"{what} {value!r} is not an email address like 'ops@example.com'")
    return value.strip(), bare


def _tls_context(verify: bool, ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    if ca_file is not None:
        path = Path(ca_file)
        if not path.is_file():
            raise ValueError(f"ca_file {str(path)!r} is not a file")
        try:
            return ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            raise ValueError(f"ca_file {str(path)!r} holds no usable certificate: {exc}") from exc
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class EmailAlerter(Alerter):
    """Sends each alert as one mail (plain text and HTML) to ``recipients``.

    :param host: the SMTP server's name or address.
    :param port: its port: usually 587 (STARTTLS), 465 (``use_tls``) or 25 (a local relay).
    :param sender: the ``From`` address, ``"xtasks@example.com"`` or ``"Ops <ops@…>"``.
    :param recipients: a non-empty list of addresses.
    :param username: log in as this user (only over TLS); needs ``password_env``.
    :param password_env: the name of the environment variable holding the password, read
        at each send.
    :param starttls: upgrade the connection with STARTTLS, and fail if the server does not
        offer it. Defaults to ``True`` unless ``use_tls`` is set; exclusive with it.
    :param use_tls: implicit TLS from the first byte (SMTPS, port 465).
    :param timeout: seconds for connecting and for each SMTP command; a whole send ends
        within ``4 × timeout`` (the :attr:`timeout` the scheduler enforces is a little more).
    :param tls_verify: verify the server's certificate and name (default). ``False`` accepts
        any certificate, which logs a warning.
    :param ca_file: trust exactly the CA certificates in this PEM file instead of the
        system's (a company CA, a test CA).
    :param manager_url: the manager's base URL (``https://app.example.com/manager``); the
        mail then links to the task's page ``{manager_url}/view/{task}``.
    :raises ValueError: on any invalid option, naming it.
    :raises TypeError: on any invalid option, naming it.
    :raises ImportError: when aiosmtplib is missing, with the command that installs it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        username: str | None = None,
        password_env: str | None = None,
        starttls: bool | None = None,
        use_tls: bool = False,
        timeout: float = 15.0,
        tls_verify: bool = True,
        ca_file: str | os.PathLike[str] | None = None,
        manager_url: str | None = None,
    ) -> None:
        _aiosmtplib()
        if not isinstance(host, str) or not host.strip() or re.search(r"[\s/]", host):
            raise ValueError(f"host must be a server name or address, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        self.sender, self._sender_address = _address(sender, "sender")
        if isinstance(recipients, str | bytes) or not recipients:
            raise ValueError(
                "recipients must be a non-empty list of addresses, e.g. ['ops@example.com'], "
                f"got {recipients!r}"
            )
        parsed = [_address(r, "recipient") for r in recipients]
        for flag, name in ((use_tls, "use_tls"), (tls_verify, "tls_verify")):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be true or false, got {flag!r}")
        if starttls is not None and not isinstance(starttls, bool):
            raise TypeError(f"starttls must be true or false, got {starttls!r}")
        if use_tls and starttls:
            raise ValueError(
                "use_tls (implicit TLS, usually port 465) and starttls (usually port 587) "
                "are exclusive: choose one"
            )
        starttls = not use_tls if starttls is None else starttls
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if username is not None and (not isinstance(username, str) or not username):
            raise ValueError(f"username must be a non-empty string, got {username!r}")
        if password_env is not None and (
            not isinstance(password_env, str) or not _ENV_NAME.fullmatch(password_env)
        ):
            # The value is not shown: it may be a password put here by mistake.
            raise ValueError(
                "password_env must be the NAME of an environment variable holding the "
                "password, such as SMTP_PASSWORD"
            )
        if username is not None and password_env is None:
            raise ValueError("username is set but password_env is not: name the variable")
        if password_env is not None and username is None:
            raise ValueError("password_env is set but username is not")
        if username is not None and not (starttls or use_tls):
            raise ValueError(
                "refusing to send credentials in clear: username needs starttls or use_tls"
            )
        if ca_file is not None and not tls_verify:
            raise ValueError("ca_file is only used to verify certificates: drop tls_verify=false")
        if manager_url is not None:
            parts = urlsplit(manager_url) if isinstance(manager_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    "manager_url must be an http(s) URL such as "
                    f"'https://app.example.com/manager', got {manager_url!r}"
                )

        self.host = host
        self.port = port
        self.recipients = [written for written, _ in parsed]
        self._recipient_addresses = [bare for _, bare in parsed]
        self.username = username
        self.password_env = password_env
        self.starttls = starttls
        self.use_tls = use_tls
        self.tls_verify = tls_verify
        self.ca_file = None if ca_file is None else str(ca_file)
        self.manager_url = manager_url
        self.smtp_timeout = float(timeout)
        #: The scheduler's bound on one whole send; SMTP gives up a little before it.
        self.timeout = SEND_BUDGET * self.smtp_timeout + 1.0
        self._tls = _tls_context(tls_verify, ca_file) if (starttls or use_tls) else None
        if not tls_verify and self._tls is not None:
            _log.warning(
                "%r: TLS certificate verification is OFF: anyone between this host and the "
                "SMTP server can read the alerts%s",
                self,
                " and the SMTP password" if username else "",
            )

    def __repr__(self) -> str:
        mode = "tls" if self.use_tls else "starttls" if self.starttls else "plain"
        parts = [f"{self.host}:{self.port}", mode, f"to={','.join(self.recipients)}"]
        if self.username:
            parts.append(f"user={self.username}, password_env={self.password_env}")
        if not self.tls_verify:
            parts.append("tls_verify=False")
        return f"<EmailAlerter {' '.join(parts)}>"

    # --- the message --------------------------------------------------------------------

    def message(self, alert: Alert) -> EmailMessage:
        """The mail for ``alert``: headers, a plain-text part and an HTML alternative."""
        msg = EmailMessage()
        msg["Subject"] = subject(alert)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = format_datetime(alert.at)
        msg["Message-ID"] = make_msgid("xtasks", domain=self._sender_address.rpartition("@")[2])
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Xtasks-Task"] = alert.task
        msg["X-Xtasks-Alert"] = alert.kind.value
        if alert.kind is AlertKind.FAILING:
            msg["Importance"] = "high"
        msg.set_content(text_body(alert, self.manager_url))
        msg.add_alternative(html_body(alert, self.manager_url), subtype="html")
        return msg

    # --- sending ------------------------------------------------------------------------

    def _password(self) -> str | None:
        if self.password_env is None:
            return None
        password = os.environ.get(self.password_env)
        if not password:
            raise EmailAlertError(
                f"the environment variable {self.password_env} (password_env of "
                f"{self!r}) is not set or empty; set it to the SMTP password"
            )
        return password

    async def send(self, alert: Alert) -> None:
        """Send one mail; raise :class:`EmailAlertError` when it was not accepted."""
        message = self.message(alert)
        password = self._password()
        try:
            await _deliver_anywhere(self, message, password)
        except EmailAlertError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                detail = f"no answer within {SEND_BUDGET * self.smtp_timeout:g} s"
            else:
                detail = f"{type(exc).__name__}: {exc}"
            leaked = password is not None and password in detail
            if leaked and password is not None:
                detail = detail.replace(password, "***")
            error = EmailAlertError(
                f"cannot send the {alert.kind.value} alert for task {alert.task!r} "
                f"through {self.host}:{self.port}: {detail}"
            )
            if leaked:
                raise error from None  # the original's text holds the password
            raise error from exc

    async def _deliver(self, message: EmailMessage, password: str | None) -> None:
        """The SMTP conversation; must run on an asyncio loop."""
        aiosmtplib = _aiosmtplib()
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.use_tls,
            start_tls=False,  # done below, so that "not offered" is an error
            tls_context=self._tls,
            timeout=self.smtp_timeout,
        )
        async with asyncio.timeout(SEND_BUDGET * self.smtp_timeout):
            await smtp.connect()
            transport = smtp.transport
            try:
                if self.starttls:
                    await smtp.ehlo()
                    if not smtp.supports_extension("starttls"):
                        raise EmailAlertError(
                            f"{self.host}:{self.port} does not offer STARTTLS; not sending "
                            "in clear (set starttls=false only for a trusted local relay "
                            "without a username)"
                        )
                    await smtp.starttls()
                    transport = smtp.transport
                if self.username is not None:
                    # Only reachable over TLS: checked at construction, and above.
                    await smtp.login(self.username, password or "")
                errors, _ = await smtp.send_message(
                    message, sender=self._sender_address, recipients=self._recipient_addresses
                )
                if errors:
                    refused = (f"{rcpt} ({r.code} {r.message})" for rcpt, r in errors.items())
                    _log.warning("%r: some recipients were refused: %s", self, ", ".join(refused))
                await smtp.quit()
            finally:
                smtp.close()
                # Done (or failed): drop the connection now rather than wait for a TLS
                # close_notify that may never come, and let the loop close the socket, so
                # no transport outlives the send (nor the private loop under trio).
                if transport is not None:
                    transport.abort()
                    for _ in range(3):
                        await asyncio.sleep(0)


async def _deliver_anywhere(
    alerter: EmailAlerter, message: EmailMessage, password: str | None
) -> None:
    """Run :meth:`EmailAlerter._deliver` on the current asyncio loop, or, under trio, on
    an asyncio loop of its own in a worker thread (abandoned on cancellation: its own
    timeouts end it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        await anyio.to_thread.run_sync(
            lambda: asyncio.run(alerter._deliver(message, password)),
            abandon_on_cancel=True,
        )
    else:
        await alerter._deliver(message, password)
