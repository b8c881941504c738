"""The page's static files (stylesheet, script, icon), shipped in the package.

Read once and kept; each page links them with a version taken from their content, so a
browser never keeps an old script beside a new page.
"""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["STATIC_FILES", "asset_version", "read_static"]

#: The files under ``{prefix}/static/`` and their content types; nothing else is served.
STATIC_FILES = {
    "manager.css": "text/css; charset=utf-8",
    "manager.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

_static_cache: dict[str, bytes] = {}


def read_static(name: str) -> bytes:
    """The bytes of static file ``name``."""
    data = _static_cache.get(name)
    if data is None:
        data = (resources.files("xtasks_fastapi") / "static" / name).read_bytes()
        _static_cache[name] = data
    return data


def asset_version(name: str) -> str:
    """A short hash of ``name``'s content, for its URL."""
    return hashlib.sha256(read_static(name)).hexdigest()[:12]
