"""Store factories by URL scheme, and the redaction of the credentials URLs carry.

The core dispatches on nothing but the scheme: each backend registers a factory for it
through the ``xtasks_add_stores`` hook (the built-ins too), so a new backend is a plugin
and touches no code here. Every URL an error, a log line or a repr shows goes through
:func:`redact_url` first: a store URL is configuration, and it often holds a password.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from urllib.parse import parse_qsl, unquote, unquote_plus

from .._errors import ConfigError, PluginError, XtasksError
from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "RETENTION_OPTIONS",
    "StoreFactory",
    "StoreRegistry",
    "builtin_stores",
    "check_retention",
    "query_options",
    "redact_url",
    "url_scheme",
]

_log = logging.getLogger("xtasks.stores")

#: Builds a store (not yet opened) from its whole URL; raises ConfigError on a bad URL.
StoreFactory: TypeAlias = "Callable[[str], Store]"

#: What replaces a secret.
MASK = "***"

#: RFC 3986 scheme, as it starts a URL.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)", re.DOTALL)
#: Query keys whose values are secrets, compared lower-cased and percent-decoded.
_SECRET_KEYS = frozenset({"pass", "pwd", "auth", "apikey", "api_key"})
_SECRET_WORDS = ("password", "passwd", "secret", "token")
#: Secrets shorter than this are not searched for in free text (they would mangle it);
#: the URL they belong to is still replaced whole.
_MIN_SCRUBBED = 4


def redact_url(url: str) -> str:
    """``url`` with its password, and any secret-looking query value, replaced by ``***``.

    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``;
    ``redis://host/0?password=s`` -> ``redis://host/0?password=***``. The user name,
    host and path stay, for an operator to recognise the store. Errs towards hiding:
    a password with unencoded ``@``, ``/`` or ``?`` in it is still hidden whole.
    """
    head, rest = "", url
    match = _AUTHORITY.fullmatch(url)
    if match is not None:
        head, rest = match.groups()
        at = rest.rfind("@")  # a password may hold an unencoded "@": take the last one
        if at >= 0:
            user, colon, _ = rest[:at].partition(":")
            if colon and not any(c in user for c in "/?#"):
                rest = f"{user}:{MASK}{rest[at:]}"
    base, qmark, query = rest.partition("?")
    if qmark:
        # The whole remainder is the query: a "#" inside a password must not end it.
        pairs = [_redact_pair(pair) for pair in query.split("&")]
        rest = f"{base}?{'&'.join(pairs)}"
    return head + rest


def _redact_pair(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    return f"{key}={MASK}" if eq and _is_secret_key(key) else pair


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_KEYS or any(word in name for word in _SECRET_WORDS)


def _secrets(url: str) -> list[str]:
    """The secrets in ``url``, raw and percent-decoded, longest first."""
    found: set[str] = set()
    match = _AUTHORITY.fullmatch(url)
    if match is not None:
        rest = match.group(2)
        at = rest.rfind("@")
        user, colon, password = rest[:at].partition(":") if at >= 0 else ("", "", "")
        if colon and password and not any(c in user for c in "/?#"):
            found |= {password, unquote(password)}
    _, qmark, query = url.partition("?")
    if qmark:
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            if eq and value and _is_secret_key(key):
                found |= {value, unquote_plus(value)}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (say, a driver's error message) with ``url`` redacted, and with each of
    its secrets replaced wherever it appears on its own."""
    text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        if len(secret) >= _MIN_SCRUBBED:
            text = text.replace(secret, MASK)
    return text


def url_scheme(url: str) -> str | None:
    """The scheme of ``url``, lower-cased (``"sqlite"``), or ``None`` if it has none."""
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon and _SCHEME.fullmatch(scheme) else None


def query_options(
    url: str, query: str, known: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    """Parse a store URL's ``?key=value&...`` into keyword arguments for its store.

    :param url: the whole URL, for messages (redacted there).
    :param query: the part after ``?``.
    :param known: option name -> converter (``int``, ``float``, ...).
    :raises ConfigError: an unknown option, or a value its converter refuses.
    """
    shown = redact_url(url)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        convert = known.get(key)
        if convert is None:
            names = ", ".join(known) or "none"
            raise ConfigError(f"unknown option {key!r} in {shown!r}; known: {names}", field="store")
        try:
            options[key] = convert(value)
        except ValueError:
            kind = getattr(convert, "__name__", "valid value")
            shown_value = MASK if _is_secret_key(key) else repr(value)
            raise ConfigError(
                f"option {key!r} in {shown!r} must be a {kind}, got {shown_value}",
                field="store",
            ) from None
    return options


#: The retention options every built-in backend takes, in its URL and its constructor.
RETENTION_OPTIONS: dict[str, Callable[[str], Any]] = {"max_runs_per_task": int, "max_age": float}


def check_retention(*, max_runs_per_task: int | None, max_age: float | None) -> None:
    """Refuse retention bounds that mean nothing: a store checks them when it is built.

    :raises ConfigError: ``max_runs_per_task`` under 1, or ``max_age`` not a positive
        finite number of seconds, naming the option.
    """
    if max_age is not None and not (math.isfinite(max_age) and max_age > 0):
        raise ConfigError(f"must be > 0 seconds, not {max_age!r}", field="max_age")
    if max_runs_per_task is not None and max_runs_per_task < 1:
        raise ConfigError(
            f"must be at least 1, not {max_runs_per_task!r}", field="max_runs_per_task"
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    factory: StoreFactory
    origin: str
    example: str


class StoreRegistry:
    """Which factory opens which URL scheme, and who registered it.

    A scheduler fills one from its plugins' ``xtasks_add_stores`` hooks;
    :func:`builtin_stores` gives one with the built-in schemes only.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, scheme: object) -> bool:
        return isinstance(scheme, str) and scheme.lower() in self._entries

    def __repr__(self) -> str:
        return f"StoreRegistry({self.supported()})"

    @property
    def schemes(self) -> tuple[str, ...]:
        """The registered schemes, in registration order."""
        return tuple(self._entries)

    def origin(self, scheme: str) -> str | None:
        """Who registered ``scheme`` (a plugin's description), or ``None``."""
        entry = self._entries.get(scheme.lower())
        return entry.origin if entry is not None else None

    def supported(self) -> str:
        """``"memory://, sqlite:///path.db, ..."``: one example URL per scheme."""
        return ", ".join(entry.example for entry in self._entries.values()) or "none"

    def register(
        self,
        scheme: str,
        factory: StoreFactory,
        *,
        example: str | None = None,
        origin: str = "xtasks",
    ) -> None:
        """Make ``<scheme>://...`` URLs open with ``factory(url)``.

        :param scheme: e.g. ``"postgresql"`` (without ``://``); case-insensitive.
        :param factory: called with the whole URL; returns a store not yet opened.
        :param example: an example URL for messages; ``"<scheme>://"`` by default.
        :param origin: who registers it, for the message when two plugins collide.
        :raises PluginError: the scheme is malformed, or another origin has it.
        """
        key, factory = check_scheme(scheme, factory)
        other = self._entries.get(key)
        if other is not None:
            raise PluginError(
                f"store scheme {key + '://'!r} is registered by both {other.origin} and "
                f"{origin}; uninstall one of them, or select plugins with XTASKS_PLUGINS"
            )
        self._entries[key] = _Entry(factory, origin, example or f"{key}://")

    def open(self, url: str) -> Store:
        """The store for ``url``, built by its scheme's factory (not yet opened).

        :raises ConfigError: no factory has the URL's scheme, or the factory refuses
            the URL; the message shows the URL redacted, and the supported schemes.
        :raises PluginError: the factory failed otherwise, or returned no store.
        """
        shown = redact_url(url)
        scheme = url_scheme(url)
        entry = self._entries.get(scheme) if scheme is not None else None
        if entry is None:
            raise ConfigError(
                f"unknown store URL {shown!r}; supported: {self.supported()} "
                "(a plugin adds more schemes through the xtasks_add_stores hook)",
                field="store",
            )
        try:
            store = entry.factory(url)
        except XtasksError as exc:
            text = str(exc)
            if scrub(text, url) == text:
                raise
            # The factory showed a secret: say the same thing without it, and without
            # chaining the original (a traceback would print it).
            message = scrub(getattr(exc, "message", text), url)
            if isinstance(exc, ConfigError):
                raise ConfigError(message, task=exc.task, field=exc.field) from None
            raise PluginError(
                f"the {scheme}:// store factory of {entry.origin}: {message}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - a backend's bug is reported, redacted
            text = f"{type(exc).__name__}: {exc}"
            cause = exc if scrub(text, url) == text else None
            raise PluginError(
                f"the {scheme}:// store factory of {entry.origin} failed on {shown!r}: "
                f"{scrub(text, url)}"
            ) from cause
        if not isinstance(store, Store):
            raise PluginError(
                f"the {scheme}:// store factory of {entry.origin} returned "
                f"{type(store).__name__}, not an xtasks.abc.Store"
            )
        _log.debug("store %s opened with the factory of %s: %r", shown, entry.origin, store)
        return store


def check_scheme(scheme: object, factory: object) -> tuple[str, StoreFactory]:
    """Refuse what ``register(scheme, factory)`` cannot mean.

    :return: the scheme lower-cased, and the factory.
    :raises PluginError: naming what is wrong.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise PluginError(
            f"register() takes a URL scheme such as 'postgresql' (letters, digits, '+.-'; "
            f"no '://'), got {scheme!r}"
        )
    if not callable(factory):
        raise PluginError(f"register() takes a factory(url) -> Store, got {factory!r}")
    return scheme.lower(), cast("StoreFactory", factory)


def builtin_stores() -> StoreRegistry:
    """A registry with the core's own schemes (``memory``, ``sqlite``, ``postgresql``,
    ``postgres``), as its built-in plugin registers them; for callers without a plugin
    manager."""
    from .. import _builtin

    registry = StoreRegistry()

    def register(scheme: str, factory: StoreFactory, /, *, example: str | None = None) -> None:
        registry.register(scheme, factory, example=example, origin=_builtin.__name__)

    _builtin.xtasks_add_stores(register)
    return registry
