"""The bounded YAML loader: a configuration file read and composed under budgets.

A hostile file is refused before it can cost much: its size (:data:`MAX_FILE_BYTES`, read
no further), the nesting depth, what YAML aliases add once expanded and the node count,
each checked while scanning or composing, never after building the data, so a "billion
laughs" file is refused at its first alias past the budget. A syntax error comes with a
hint for its likely cause (a tab, an indentation that lines up with nothing, a value that
needs quoting). :mod:`._config_file` turns the composed nodes into checked settings.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import yaml

from ._errors import ConfigFileError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "BoundedLoader",
    "Mark",
    "Position",
    "position",
    "read_text",
    "syntax_error",
]

Position = tuple[int, int]

#: A configuration file larger than this (1 MiB) is refused before it is parsed.
MAX_FILE_BYTES = 1 << 20
#: Mappings and lists nested deeper than this are refused (a real file needs about 5).
MAX_DEPTH = 50
#: YAML aliases (``*name``) may add at most this many nodes in all once expanded.
MAX_ALIAS_NODES = 10_000
#: At most this many nodes (keys, values, lists, mappings) in all, aliases expanded.
MAX_NODES = 100_000


class Mark(Protocol):
    """Where a YAML token is: PyYAML's marks (Python and C) both have these, 0-based."""

    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...


def position(mark: Mark | None) -> Position | None:
    return None if mark is None else (mark.line + 1, mark.column + 1)


_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (the limit); flatten this part of the file"


class BoundedLoader(yaml.SafeLoader):
    """The safe loader, composing under the depth and alias budgets.

    PyYAML composes recursively (so 5,000 nested ``[`` raise ``RecursionError``) and shares
    an anchored node between its aliases, so expanding them (as the configuration reader does, to record
    each key's position) can cost exponentially more than the file. Each node's expanded
    size is counted as it is composed; an alias adds its anchor's size to the budget.
    """

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text)
        self.path = path
        self.depth = 0
        self.count = 0  # nodes composed so far, aliases expanded
        self.alias_nodes = 0  # of which added by aliases
        self.sizes: dict[int, int] = {}  # id(node) -> its size once aliases are expanded

    def refuse(self, message: str, mark: Mark | None) -> ConfigFileError:
        line, column = position(mark) or (None, None)
        return ConfigFileError(self.path, message, line=line, column=column)

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # Refused as scanned: the scanner looks up to 1,024 characters ahead for a key, at a
        # cost growing with the number of open "[" or "{", long before the composer sees them.
        if self.flow_level >= MAX_DEPTH:
            raise self.refuse(_TOO_DEEP, self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        peek: Callable[[], yaml.Event] = self.peek_event
        event = peek()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self.sizes.get(id(node), 1)  # an alias to an open node: the reader refuses it
            self.alias_nodes += size
            if self.alias_nodes > MAX_ALIAS_NODES:
                msg = f"the YAML aliases up to here expand to more than {MAX_ALIAS_NODES:,} nodes "
                msg += "(the limit); write the values out or use fewer aliases"
                raise self.refuse(msg, event.start_mark)
            self.counted(size, event.start_mark)
            return node
        nests = isinstance(event, yaml.CollectionStartEvent)
        if nests and self.depth >= MAX_DEPTH:
            raise self.refuse(_TOO_DEEP, event.start_mark)
        before = self.count
        self.counted(1, event.start_mark)
        self.depth += nests
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= nests
        self.sizes[id(node)] = self.count - before
        return node

    def counted(self, size: int, mark: Mark | None) -> None:
        self.count += size
        if self.count > MAX_NODES:
            msg = f"more than {MAX_NODES:,} keys and values in all, aliases expanded (the limit); "
            raise self.refuse(msg + "is this the right file? split it if it is", mark)


_INDENT_PROBLEMS = (
    "expected <block end>",
    "did not find expected key",
    "did not find expected '-' indicator",
)


def syntax_error(path: str, exc: yaml.YAMLError) -> ConfigFileError:
    """A YAML syntax error, with a hint for its likely cause: a tab, an indentation that
    lines up with nothing, or a value that needs quoting."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem, context = getattr(exc, "problem", None) or str(exc), getattr(exc, "context", None)
    line, column = position(mark) or (None, None)
    text = _line_of(mark)
    if "'\\t'" in problem:
        message = "YAML syntax error: a tab character, which YAML does not allow here"
        hint = "; replace it with spaces (YAML indents with spaces only)"
    elif text is not None and _misindented(problem, text, mark):
        indent = len(text) - len(text.lstrip(" "))
        spaces = f"{indent} space{'s' if indent != 1 else ''}"
        if problem.startswith(_INDENT_PROBLEMS):
            message = f"YAML indentation error: this line is indented by {spaces}, which "
            message += "lines up with no key above it"
        else:
            message = f"YAML indentation error: this line is indented by {spaces}, deeper "
            message += "than the key above it, so YAML reads it as the rest of that value"
        hint = "; indent it exactly like the keys it belongs with (spaces only)"
        column = indent + 1
    else:
        if context and (start := getattr(exc, "context_mark", None)) is not None:
            context += f" that starts at line {start.line + 1}"
        message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
        hint = "; fix the YAML here (quote a value that contains ': ' or starts with '{', '[', '*')"
    return ConfigFileError(path, message + hint, line=line, column=column)


def _line_of(mark: object) -> str | None:
    """The text of the line ``mark`` is on, when the loader kept the buffer."""
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if not isinstance(buffer, str) or not isinstance(pointer, int):
        return None
    start = buffer.rfind("\n", 0, pointer) + 1
    end = buffer.find("\n", pointer)
    return buffer[start : end if end >= 0 else len(buffer)].rstrip("\r\0")


def _misindented(problem: str, text: str, mark: object) -> bool:
    """Whether the error comes from the line's indentation rather than from its content."""
    if problem.startswith(_INDENT_PROBLEMS):
        return True
    if problem != "mapping values are not allowed here":
        return False
    # A key indented deeper than its siblings continues the value above: its own ':' is
    # then refused. A ': ' later in a line is a value that needs quoting instead.
    return text.find(":") == getattr(mark, "column", -1)


def read_text(path: str) -> str:
    """The file's text; never more than ``MAX_FILE_BYTES`` is read, even from a device."""
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
        size = os.fstat(file.fileno()).st_size
    if len(data) > MAX_FILE_BYTES:
        size_text = f"{size:,}" if size > MAX_FILE_BYTES else f"more than {MAX_FILE_BYTES:,}"
        msg = f"too large ({size_text} bytes; the limit is {MAX_FILE_BYTES:,} bytes = 1 MiB); "
        raise ConfigFileError(path, msg + "is this the right file? split it if it is")
    return data.decode("utf-8")
