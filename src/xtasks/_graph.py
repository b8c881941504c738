"""The dependency graph of the registered tasks: edges, cycles, depths, unknown names.

Pure bookkeeping on names; the planner consults it when a task is added or removed and
when same-time fires must be ordered upstream first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._errors import ConfigError, DependencyCycleError, UnknownDependencyError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

__all__ = ["DependencyGraph"]


@final
class DependencyGraph:
    """The ``depends_on`` edges of registered tasks; always acyclic. A task without
    dependencies leaves no trace here (most tasks: they cost nothing)."""

    __slots__ = ("_dependents", "_depends_on", "_depths")

    def __init__(self) -> None:
        self._depends_on: dict[str, tuple[str, ...]] = {}  # only tasks with dependencies
        self._dependents: dict[str, set[str]] = {}  # name -> registered tasks depending on it
        self._depths: dict[str, int] = {}  # memoised; cleared when an edge could move them

    def add(self, name: str, depends_on: Iterable[str]) -> None:
        """Add ``name`` with its edges.

        :raises DependencyCycleError: the new edges close a cycle (the path is named).
        """
        deps = tuple(depends_on)
        if not deps:
            return  # no cycle through it, and no depth moves: an unknown name counts 0 too
        self._check_cycle(name, deps)
        self._depends_on[name] = deps
        for dep in deps:
            self._dependents.setdefault(dep, set()).add(name)
        if self._dependents.get(name):
            self._depths.clear()  # tasks added earlier depend on this one: depths move

    def remove(self, name: str) -> None:
        """Remove ``name`` and its edges.

        :raises ConfigError: other registered tasks depend on it.
        """
        dependents = sorted(self._dependents.get(name, ()))
        if dependents:
            raise ConfigError(
                f"cannot remove it: {', '.join(dependents)} depend on it; remove those tasks first",
                task=name,
            )
        for dep in self._depends_on.pop(name, ()):
            self._dependents[dep].discard(name)
        self._depths.pop(name, None)

    def unknown(self, registered: Collection[str]) -> list[UnknownDependencyError]:
        """One error per ``depends_on`` entry that names none of the ``registered`` tasks."""
        known = sorted(registered)
        return [
            UnknownDependencyError(name, dep, known)
            for name, deps in self._depends_on.items()
            for dep in deps
            if dep not in registered
        ]

    def depth(self, name: str) -> int:
        """Depth in the graph (0 for a task without dependencies): fires due at the same
        time are handled upstream first. Iterative, so long chains are fine."""
        edges, depths = self._depends_on, self._depths
        if name not in edges:
            return 0  # no dependencies (or not registered): the usual case, not memoised
        if name in depths:
            return depths[name]
        stack = [name]
        while stack:
            current = stack[-1]
            own = edges[current]
            missing = [d for d in own if d in edges and d not in depths]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            depths[current] = 1 + max(depths.get(d, 0) for d in own)
        return depths[name]

    def _check_cycle(self, name: str, deps: tuple[str, ...]) -> None:
        """Raise if adding ``name`` closes a cycle; the message shows the whole path.

        The registered graph is acyclic, so a new cycle must pass through ``name``, which
        needs a registered task depending on it; then a walk from its dependencies
        suffices (no recursion).
        """
        if not self._dependents.get(name):  # a Task never depends on itself (refused)
            return  # nothing registered depends on it: no path can lead back to it
        parent: dict[str, str] = {}
        stack = [(name, dep) for dep in deps]
        while stack:
            src, node = stack.pop()
            if node in parent:
                continue
            parent[node] = src
            if node == name:
                path = [node]
                step = src
                while step != name:
                    path.append(step)
                    step = parent[step]
                path.append(name)
                raise DependencyCycleError(path[::-1])
            stack.extend((node, dep) for dep in self._depends_on.get(node, ()))
