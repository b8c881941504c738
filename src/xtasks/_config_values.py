"""What a configuration value may say: ``${ENV}`` references, expanded from the
environment, and secrets written literally, which get a warning (they belong in the
environment, not in YAML)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["expand", "expand_env", "has_secret", "is_secret"]

# A key is a secret when its last word is one of these, or its last two words one of the
# pairs: "smtp_password", "authToken", "client-secret", "aws_secret_access_key" are;
# "token_ttl", "password_file", "secret_name", "access_key_id", "max_tokens" are not.
_SECRET_WORDS = frozenset(
    {
        *("password", "passwd", "pwd", "pass", "passphrase", "secret", "token"),
        *("credential", "credentials", "authorization", "apikey"),
    }
)
_SECRET_PAIRS = frozenset(
    {("private", "key"), ("access", "key"), ("api", "key"), ("secret", "key")}
    | {("signing", "key"), ("encryption", "key"), ("master", "key"), ("auth", "key")}
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A URL with a password in it (scheme://user:password@host; the user may be empty, as in
# redis://:password@host), or a libpq keyword DSN ("host=db password=..."); a password
# written as ${VAR} does not count.
_URL_SECRET = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:(?!\$\{)[^/\s@]+@")
_DSN_SECRET = re.compile(r"(?:^|\s)password\s*=\s*(?!\$\{)[^\s'\"]", re.IGNORECASE)
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


def expand_env(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` (default when unset or empty) in ``text``.

    ``$${`` stands for a literal ``${``. Secrets thus stay in the environment, not in YAML.

    :raises ConfigError: a variable is unset and has no default, or a ``${`` is malformed.
    """
    return expand(text, environ)[0]


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    """``text`` with its variables replaced, and whether it had any."""
    used = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            msg = "malformed '${': write ${NAME} or ${NAME:-default} (NAME: letters, digits, _)"
            raise ConfigError(msg + ", or $${ for a literal '${'")
        used = True
        value = environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            msg = f"environment variable {name!r} is not set; export {name}=... before starting"
            raise ConfigError(msg + f", or give a default: ${{{name}:-default}}")
        return value

    return _ENV.sub(substitute, text), used


def is_secret(key: str) -> bool:
    """Whether a key names a secret, by its words (snake_case, kebab-case or camelCase)."""
    words = [word.lower() for word in _WORDS.findall(key)]
    return bool(words) and (words[-1] in _SECRET_WORDS or tuple(words[-2:]) in _SECRET_PAIRS)


def has_secret(text: str) -> bool:
    """Whether a value written in the file holds a password: in a URL, or ``password=``."""
    return _URL_SECRET.search(text) is not None or _DSN_SECRET.search(text) is not None
