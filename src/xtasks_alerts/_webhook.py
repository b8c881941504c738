"""``WebhookAlerter``: alerts as signed JSON POSTs (Standard Webhooks), on httpx."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, final

import anyio

from xtasks.abc import Alerter

from ._addresses import PrivateAddressError, check_address, parse_ip_literal, resolve

if TYPE_CHECKING:
    import ssl

    import httpx

    from xtasks.events import Alert

__all__ = ["WebhookAlerter", "WebhookError"]

#: Longest pause between two attempts, whatever ``backoff`` and the attempt number.
MAX_BACKOFF = 5.0
#: Characters of an error message put in the body, at most (its start, the cut marked);
#: the traceback is never sent.
MAX_ERROR_MESSAGE = 2000
#: Extra seconds in :attr:`WebhookAlerter.timeout` beyond the attempts and pauses.
TIMEOUT_MARGIN = 1.0
_SECRET_PREFIX = "whsec_"


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError(
            "WebhookAlerter needs httpx, which is not installed: pip install xtasks-alerts  "
            "(the distribution that brings it)"
        ) from exc
    return httpx


def _user_agent() -> str:
    try:
        version = metadata.version("xtasks")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "0"
    return f"xtasks-webhook/{version}"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # pragma: no cover - xtasks times are always aware
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _decode_secret(secret: str) -> bytes:
    form = "'whsec_' followed by the base64 of the key (Standard Webhooks), e.g. 'whsec_MfKQ9r8G…'"
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        raise ValueError(f"webhook secret must be {form}; the value given does not start so")
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"webhook secret must be {form}; the part after 'whsec_' is not valid base64"
        ) from None
    if not key:
        raise ValueError(f"webhook secret must be {form}; the key is empty")
    return key


class WebhookError(Exception):
    """A webhook delivery failed (after its retries). Never names the secret or URL path."""


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix."""


@final
class WebhookAlerter(Alerter):
    """POST each alert as JSON to ``url``, signed the Standard Webhooks way.

    :param url: an ``http`` or ``https`` URL. Its path and query may carry a token (as
        Slack's do): they are never shown in ``repr``, logs or errors.
    :param secret: ``whsec_<base64 key>``; when given, every request carries the
        Standard Webhooks headers ``webhook-id`` (one per alert, the same on every retry),
        ``webhook-timestamp`` (Unix seconds of the attempt) and
        ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed
        with the decoded key. A receiver should compare in constant time and refuse
        timestamps more than a few minutes old.
    :param allow_private: let the URL reach loopback, link-local, private and other
        non-public addresses (tests, internal hooks). Off by default: such hosts are
        refused when the alerter is created (IP literals) and after every resolution.
    :param timeout: seconds one attempt may take in all (resolution, connection, sending,
        the response's status line and headers); also each httpx connect/read/write/pool
        timeout.
    :param retries: extra attempts after a connection error, a timeout, a 5xx or a 429,
        with pauses of ``backoff``, ``2 * backoff``… seconds (at most :data:`MAX_BACKOFF`).
        Other responses are final: 2xx succeeds; 3xx (redirects are not followed) and
        other 4xx fail at once.
    :param backoff: seconds before the first retry.
    :param ssl_context: how https servers are verified; by default against the ``certifi``
        authorities, with host name checking (pass one to trust an internal CA).

    The alerter's :attr:`timeout` attribute, which the scheduler uses to bound one whole
    ``send``, is ``timeout * (retries + 1)`` plus the pauses plus one second, so a send
    ends by itself before the scheduler abandons it.

    The body is one JSON object (UTF-8, compact)::

        {
          "type": "failing",                 # or "recovered"
          "task": "nightly-report",
          "run_id": "…",                     # the run that crossed the threshold / recovered
          "run_status": "failed",            # that run's status
          "cause": "schedule",               # why that run exists
          "scheduled_at": "2026-03-01T02:30:00Z",
          "started_at": "2026-03-01T02:30:00.012Z",   # or null
          "finished_at": "2026-03-01T02:30:04.5Z",    # or null
          "attempts": 3,                     # attempts of that run
          "error": {"type": "ConnectionError", "message": "…"},  # or null; no traceback
          "consecutive_failures": 2,         # 0 for "recovered"
          "last_success": "2026-03-01T01:30:02Z",     # the task's last success, or null
          "timestamp": "2026-03-01T02:30:04.6Z"       # when the alert was raised, UTC
        }

    Requests carry ``Content-Type: application/json`` and ``User-Agent:
    xtasks-webhook/<version>``. Proxy environment variables are ignored (a proxy would
    resolve the name itself, out of the guard's reach).
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        allow_private: bool = False,
        timeout: float = 15,
        retries: int = 3,
        backoff: float = 0.5,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        httpx = _import_httpx()
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"webhook url is not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise ValueError(
                f"webhook url must use http or https, not {parsed.scheme or 'no scheme'!r}"
            )
        if not parsed.host:
            raise ValueError("webhook url has no host")
        if not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ValueError(f"retries must be an integer from 0 to 10, got {retries!r}")
        if not (isinstance(backoff, int | float) and 0 <= backoff < math.inf):
            raise ValueError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        self._url = parsed
        self._key = None if secret is None else _decode_secret(secret)
        self.allow_private = bool(allow_private)
        self.attempt_timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        shown_host = parsed.raw_host.decode("ascii")
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        port = f":{parsed.port}" if parsed.port is not None else ""
        #: scheme, host and port only: no credentials, path or query (they may be tokens)
        self._shown = f"{parsed.scheme}://{shown_host}{port}"
        self._literal = parse_ip_literal(parsed.host)
        if self._literal is not None and not self.allow_private:
            check_address(parsed.host, self._literal)
        self.timeout = (
            self.attempt_timeout * (retries + 1)
            + sum(self._pause(n) for n in range(retries))
            + TIMEOUT_MARGIN
        )
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._user_agent = _user_agent()

    def __repr__(self) -> str:
        return f"WebhookAlerter({self._shown + '/…'!r})"

    def _pause(self, retry: int) -> float:
        return float(min(self.backoff * 2**retry, MAX_BACKOFF))

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON object sent for ``alert`` (see the class docstring)."""
        run = alert.run
        error = None
        if run.error is not None:
            error = {"type": run.error.type, "message": run.error.short_message(MAX_ERROR_MESSAGE)}
        return {
            "type": alert.kind.value,
            "task": alert.task,
            "run_id": run.id,
            "run_status": run.status.value,
            "cause": run.cause.value,
            "scheduled_at": _iso(run.scheduled_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "attempts": run.attempts,
            "error": error,
            "consecutive_failures": alert.consecutive_failures,
            "last_success": _iso(alert.last_success),
            "timestamp": _iso(alert.at),
        }

    def _headers(self, message_id: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": self._user_agent}
        if self._key is not None:
            stamp = str(int(time.time()))
            signed = f"{message_id}.{stamp}.".encode() + body
            digest = hmac.new(self._key, signed, hashlib.sha256).digest()
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = stamp
            headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode("ascii")
        return headers

    async def send(self, alert: Alert) -> None:
        """POST ``alert``, retrying as documented.

        :raises WebhookError: when no attempt succeeded, naming the last cause.
        :raises PrivateAddressError: when the host resolves to a refused address
            (not retried).
        """
        body = json.dumps(self.payload(alert), separators=(",", ":"), ensure_ascii=False)
        data = body.encode()
        message_id = f"msg_{uuid.uuid4().hex}"
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                await anyio.sleep(self._pause(attempt - 1))
            try:
                with anyio.fail_after(self.attempt_timeout):
                    status = await self._attempt(self._headers(message_id, data), data)
            except _Retryable as exc:
                cause = str(exc)
            except TimeoutError:
                cause = f"no response within {self.attempt_timeout:g} s"
            else:
                if 200 <= status < 300:
                    return
                if 300 <= status < 400:
                    raise WebhookError(
                        f"webhook {self!r} answered {status}, a redirect (not followed)"
                    )
                if status != 429 and status < 500:
                    raise WebhookError(f"webhook {self!r} refused the alert with {status}")
                cause = f"status {status}"
        raise WebhookError(f"webhook {self!r} failed after {attempts} attempt(s); last: {cause}")

    async def _targets(self) -> list[tuple[httpx.URL, dict[str, str], dict[str, Any]]]:
        """Where to connect: the URL itself (an IP literal), or one per address of its host.

        For a name, the host is resolved once and every address checked (unless
        ``allow_private``); the request then goes to a resolved address (in the URL), with
        the name kept in the ``Host`` header and, for https, as TLS SNI and the name the
        certificate is verified against (httpcore's ``sni_hostname`` extension). Nothing
        resolves the name again, so a DNS answer that changes between the check and the
        connection (rebinding) cannot redirect the request. The addresses are tried in
        the resolver's order while connecting fails.
        """
        url = self._url
        if self._literal is not None:
            return [(url, {}, {})]
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await resolve(host, port, allow_private=self.allow_private)
        except PrivateAddressError:
            raise
        except OSError as exc:
            raise _Retryable(f"cannot resolve {host}: {exc}") from None
        netloc = url.netloc.decode("ascii").rsplit("@", 1)[-1]
        extensions: dict[str, Any] = {"sni_hostname": host} if url.scheme == "https" else {}
        return [(url.copy_with(host=str(a)), {"Host": netloc}, extensions) for a in addresses]

    async def _attempt(self, headers: dict[str, str], data: bytes) -> int:
        httpx = _import_httpx()
        targets = await self._targets()
        async with httpx.AsyncClient(
            verify=self._ssl,
            timeout=httpx.Timeout(self.attempt_timeout),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            for index, (url, extra, extensions) in enumerate(targets):
                request = client.build_request(
                    "POST", url, headers={**headers, **extra}, content=data, extensions=extensions
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.ConnectError as exc:
                    if index + 1 < len(targets):
                        continue  # the next address of the name
                    raise _Retryable(self._describe(exc)) from None
                except (httpx.TimeoutException, httpx.NetworkError, httpx.ProtocolError) as exc:
                    raise _Retryable(self._describe(exc)) from None
                await response.aclose()  # the body is not needed, nor read
                return int(response.status_code)
        raise AssertionError("unreachable")  # pragma: no cover

    def _describe(self, exc: BaseException) -> str:
        """``exc`` as text fit for logs: without the URL's path, query or credentials."""
        text, seen = "", set()
        current: BaseException | None = exc
        while current is not None and not text and id(current) not in seen:
            seen.add(id(current))  # httpx on trio keeps the message on a cause (TLS errors)
            text = str(current)
            current = current.__cause__ or current.__context__
        text = text or "no detail"
        raw = str(self._url)
        for secret in {raw, raw.split("?", 1)[0], self._url.path, self._url.query.decode()}:
            if len(secret) > 1:
                text = text.replace(secret, "…")
        return f"{type(exc).__name__}: {text}"
