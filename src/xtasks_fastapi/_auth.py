"""Who may use the manager API: bearer tokens, or the application's own dependency."""

from __future__ import annotations

import hmac
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

__all__ = ["Principal", "bearer_token"]

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


def bearer_token(
    token: str, *, read_tokens: Iterable[str] = ()
) -> Callable[..., Awaitable[Principal]]:
    """An ``auth`` dependency accepting ``Authorization: Bearer <token>``.

    Holders of ``token`` may read and act; holders of one of ``read_tokens`` may only
    read. Tokens are compared in constant time and never logged or echoed.
    """
    if not isinstance(token, str) or not token:
        raise ValueError("bearer_token() needs a non-empty token string")
    reads = tuple(read_tokens)
    if not all(isinstance(t, str) and t for t in reads):
        raise ValueError("bearer_token() read_tokens must be non-empty strings")
    write_key = token.encode()
    read_keys = tuple(t.encode() for t in reads)

    async def authenticate(
        credentials: HTTPAuthorizationCredentials | None = Depends(_scheme),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            raise _unauthorized(
                "authentication required: send the header `Authorization: Bearer <token>`"
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
