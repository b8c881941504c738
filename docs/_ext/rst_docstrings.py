"""A griffe extension: the docstrings in src/ are written reST-style (``code``, :class:`X`,
``text::`` before an indented example, ``.. versionadded::``); this turns those few forms into the Markdown
mkdocstrings renders, so the sources stay readable in an editor and ``help()``.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

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


def _doc_comment(obj: griffe.Object) -> str | None:
    """Sphinx's ``#:`` comment of an attribute: after it on its line, or on the lines above."""
    if obj.filepath is None or obj.lineno is None or isinstance(obj.filepath, list):
        return None
    collection = obj.lines_collection  # has no .get()
    lines = collection[obj.filepath] if obj.filepath in collection else None  # noqa: SIM401
    if not lines or obj.lineno > len(lines):
        return None
    own = lines[obj.lineno - 1]
    if "#:" in own:
        return own.split("#:", 1)[1].strip()
    above: list[str] = []
    index = obj.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        above.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(above) or None


def _type_checking_branch(node: object) -> str:
    """ "body" or "orelse" when ``node`` sits directly in an ``if TYPE_CHECKING:``, else ""."""
    parent = getattr(node, "parent", None)
    if not isinstance(parent, ast.If) or ast.unparse(parent.test) not in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    ):
        return ""
    return "body" if node in parent.body else "orelse" if node in parent.orelse else ""


class RstDocstrings(griffe.Extension):
    """Rewrite each object's docstring once, as it is loaded; give ``#:`` comments to
    attributes that have no docstring; and where a function is defined twice, typed under
    ``if TYPE_CHECKING:`` and loosely in its ``else:`` (as ``Task.__init__`` is), document
    the typed one, which is the signature users call."""

    def __init__(self) -> None:
        super().__init__()
        self._typed: dict[str, griffe.Object] = {}

    def on_instance(
        self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, **kwargs: Any
    ) -> None:
        if obj.is_function:
            branch = _type_checking_branch(node)
            if branch == "body":
                self._typed[obj.path] = obj
            elif branch == "orelse" and obj.path in self._typed and obj.parent is not None:
                typed = self._typed[obj.path]
                if typed.docstring is None:
                    typed.docstring = obj.docstring
                obj.parent.set_member(obj.name, typed)
                return
        if obj.docstring is None and obj.is_attribute:
            comment = _doc_comment(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
