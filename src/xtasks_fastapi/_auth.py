"""Who may use the manager API: bearer tokens, or the application's own dependency.

Browsers cannot send a bearer header when they navigate or open an ``EventSource``, so
:func:`bearer_token` also accepts a session cookie set by the page's login form. Its value
is an expiry time and an HMAC-SHA256 of it keyed by the token (never the token itself): it
needs no server-side storage, works on every replica, ends after
:data:`SESSION_SECONDS`, and stops working at once when the token is rotated.
Writes authenticated by the cookie must carry :data:`CSRF_HEADER` (a custom header a
cross-site form cannot send); writes with a bearer header are not affected.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "SESSION_SECONDS", "Principal", "bearer_token"]

#: The cookie holding a browser session of the manager page.
SESSION_COOKIE = "xtasks_manager"

#: The header (value ``1``) that writes authenticated by the session cookie must carry.
CSRF_HEADER = "X-Xtasks-Request"

#: How long a sign-in on the manager page lasts.
SESSION_SECONDS = 12 * 3600

_SESSION_CONTEXT = b"xtasks-manager-session-v2:"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_scheme = HTTPBearer(
    auto_error=False,
    description="The manager token (read and act) or a read-only token.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and whether they may act (run, pause, resume, cancel).

    An ``auth`` dependency of :func:`~xtasks_fastapi.manager_router` returns one (or
    any object with a ``can_write`` attribute).
    """

    name: str
    can_write: bool


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def _session_mac(key: bytes, expires: str) -> bytes:
    return hmac.new(key, _SESSION_CONTEXT + expires.encode(), hashlib.sha256).hexdigest().encode()


class Sessions:
    """Checks tokens typed into the login form and the session cookies derived from them.

    A cookie is ``<expiry, unix seconds>.<hex HMAC-SHA256(token, context + expiry)>``.
    Every comparison is constant-time and runs over every known token, so timing tells
    neither whether a guess was close nor which token matched.
    """

    def __init__(self, write_key: bytes, read_keys: tuple[bytes, ...]) -> None:
        self._write_key = write_key
        self._read_keys = read_keys

    def login(self, token: str, now: float | None = None) -> tuple[str, Principal] | None:
        """The cookie value and principal for a token typed into the form, or ``None``."""
        given = token.encode()
        expires = str(int(time.time() if now is None else now) + SESSION_SECONDS)
        if hmac.compare_digest(given, self._write_key):
            value = f"{expires}.{_session_mac(self._write_key, expires).decode()}"
            return value, Principal("manager-session", can_write=True)
        matched: bytes | None = None
        for key in self._read_keys:
            if hmac.compare_digest(given, key):  # no early exit
                matched = key
        if matched is None:
            return None
        value = f"{expires}.{_session_mac(matched, expires).decode()}"
        return value, Principal("read-session", can_write=False)

    def check(self, cookie: str, now: float | None = None) -> Principal | None:
        """The principal a session cookie stands for, or ``None`` when it is not valid
        (forged, from a rotated token, or expired)."""
        expires, _, mac = cookie.partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return None
        if int(expires) <= (time.time() if now is None else now):
            return None
        given = mac.encode("utf-8", "replace")
        if hmac.compare_digest(given, _session_mac(self._write_key, expires)):
            return Principal("manager-session", can_write=True)
        is_reader = False
        for key in self._read_keys:
            is_reader |= hmac.compare_digest(given, _session_mac(key, expires))
        return Principal("read-session", can_write=False) if is_reader else None


#: The :class:`Sessions` of each dependency made by :func:`bearer_token`.
_sessions: weakref.WeakKeyDictionary[Callable[..., Any], Sessions] = weakref.WeakKeyDictionary()


def sessions_of(auth: Callable[..., Any]) -> Sessions | None:
    """The login checker of a :func:`bearer_token` dependency; ``None`` for other ``auth``."""
    return _sessions.get(auth)


def _csrf_refused() -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"requests authenticated by the session cookie must carry the header "
        f"`{CSRF_HEADER}: 1` (the manager page sends it); API clients should send "
        f"`Authorization: Bearer <token>` instead",
    )


def bearer_token(
    token: str, *, read_tokens: Iterable[str] = ()
) -> Callable[..., Awaitable[Principal]]:
    """An ``auth`` dependency accepting ``Authorization: Bearer <token>``.

    Holders of ``token`` may read and act; holders of one of ``read_tokens`` may only
    read. Tokens are compared in constant time and never logged or echoed.

    Without the header, the session cookie :data:`SESSION_COOKIE` set by the manager
    page's login form is accepted instead; writes authenticated by it must carry
    :data:`CSRF_HEADER`.
    """
    if not isinstance(token, str) or not token:
        raise ValueError("bearer_token() needs a non-empty token string")
    reads = tuple(read_tokens)
    if not all(isinstance(t, str) and t for t in reads):
        raise ValueError("bearer_token() read_tokens must be non-empty strings")
    write_key = token.encode()
    read_keys = tuple(t.encode() for t in reads)
    sessions = Sessions(write_key, read_keys)

    async def authenticate(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_scheme),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            if request.headers.get("authorization") is None:
                cookie = request.cookies.get(SESSION_COOKIE)
                principal = sessions.check(cookie) if cookie else None
                if principal is not None:
                    if (
                        request.method not in _SAFE_METHODS
                        and request.headers.get(CSRF_HEADER) != "1"
                    ):
                        raise _csrf_refused()
                    return principal
            raise _unauthorized(
                "authentication required: send the header `Authorization: Bearer <token>`"
                " (or sign in on the manager page)"
            )
        given = credentials.credentials.encode()
        if hmac.compare_digest(given, write_key):
            return Principal("manager-token", can_write=True)
        is_reader = False
        for key in read_keys:  # no early exit: time does not tell which token matched
            is_reader |= hmac.compare_digest(given, key)
        if is_reader:
            return Principal("read-token", can_write=False)
        raise _unauthorized("invalid bearer token: check the token the manager was given")

    _sessions[authenticate] = sessions
    return authenticate


def _anonymous() -> Principal:
    return Principal("anonymous", can_write=True)


def write_guard(auth: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A dependency that resolves ``auth`` and refuses principals that may not act."""

    async def require_write(principal: Any) -> Any:
        if not getattr(principal, "can_write", False):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this credential may only read; use the manager token to run, pause, "
                "resume or cancel tasks",
            )
        return principal

    # `auth` is a local value, so the signature is built with objects, not strings.
    require_write.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "principal",
                inspect.Parameter.KEYWORD_ONLY,
                default=Depends(auth),
                annotation=Any,
            )
        ]
    )
    return require_write
