"""A griffe extension: the docstrings in src/ are written reST-style (``code``, :class:`X`,
``text::`` before an indented example, ``.. versionadded::``); this turns those few forms into the Markdown
mkdocstrings renders, so the sources stay readable in an editor and ``help()``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import griffe

if TYPE_CHECKING:
    import ast

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`~?([^`]+)`")
_VERSION = re.compile(r"^(\s*)\.\. versionadded:: (\S+)\s*$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def _markdown(text: str) -> str:
    """Roles become code spans, ``::`` introduces a code block, lists get their blank line."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _VERSION.sub(lambda m: f"{m.group(1)}*Added in version {m.group(2)}.*", text)
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.endswith("::"):
            stripped = stripped[:-1] if stripped.strip() != "::" else ""
            line = stripped
        previous = out[-1] if out else ""
        if (
            _LIST_ITEM.match(line)
            and previous.strip()
            and not _LIST_ITEM.match(previous)
            and not previous.startswith((" ", "\t"))
        ):
            out.append("")
        out.append(line)
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    """Rewrite each object's docstring once, as it is loaded."""

    def on_instance(
        self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, **kwargs: Any
    ) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
