"""What a scheduler reads and writes in its store about its tasks, running or not.

Start-up reads every task's stored state (:func:`load_records`), and so does a task
added while running (:class:`AddedTasks`); before start, the
Scheduler answers ``describe`` from the store (:func:`task_info`) and ``pause``,
``resume`` and ``cancel`` write the stored state (:func:`set_stored_state`), which the
next start applies. The store is opened by the first call that needs it and kept open
(:class:`OpenOnce`): a store is opened once, not per call.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import TYPE_CHECKING, Any, final

import anyio

from ._errors import StoreError, TaskNotFoundError
from ._runs import TaskInfo, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ._planner import Planner
    from ._runs import TaskRecord
    from ._service import Spawner
    from ._task import Task
    from .abc import Store

__all__ = [
    "DEFINITIONS_EVERY",
    "DEFINITIONS_PER_LOOK",
    "AddedTasks",
    "OpenOnce",
    "load_records",
    "set_stored_state",
    "task_info",
    "watch_definitions",
]

_log = logging.getLogger("xtasks")


@final
class OpenOnce:
    """Opens a store once until it is closed, however many callers ask at the same time."""

    def __init__(self) -> None:
        self.is_open = False
        self._opening: anyio.Event | None = None

    async def open(self, store: Store) -> Store:
        """``store``, opened by the first caller; the others wait for that one."""
        while not self.is_open:
            opening = self._opening
            if opening is not None:
                await opening.wait()  # if that open failed, the next loop tries again
                continue
            opening = self._opening = anyio.Event()
            try:
                await store.open()
                self.is_open = True
            finally:
                self._opening = None
                opening.set()
        return store

    async def close(self, store: Store) -> None:
        self.is_open = False
        await store.close()


async def load_records(
    store: Store, planner: Planner, names: list[str], mismatched: dict[str, str] | None = None
) -> dict[str, TaskRecord]:
    """The stored state of ``names``, after settling their grid anchors and definitions.

    A task never started anywhere gets our registration time stored as its anchor;
    then whichever replica's anchor won is read back (first writer wins). Each task's
    definition is stored as ours; one another replica stored differently is logged, and
    put in ``mismatched`` (task -> the other definition): two replicas would otherwise
    fire one name on two grids, or run two functions, without a word.
    """
    records = await store.load_tasks(names)
    tasks, saves = planner.tasks, {}
    for name in names:
        ours = tasks[name].definition
        stored = records.get(name)
        if stored is None or stored.anchor is None:
            saves[name] = planner.task_record(name, ours)
        elif stored.definition != ours:
            if stored.definition is not None:
                _mismatch(name, stored.definition, ours, mismatched)
            saves[name] = dataclasses.replace(stored, definition=ours)
    if saves:
        await store.save_tasks(saves)
        records.update(await store.load_tasks(list(saves)))
    return records


#: Seconds between two reads of the stored definitions by a running scheduler.
DEFINITIONS_EVERY = 60.0
#: Tasks whose stored definitions one look reads, the next ones at the next look: the
#: cost of a look does not grow with the number of tasks (100,000 tasks: 100 minutes
#: for all of them; a few hundred: all of them every minute).
DEFINITIONS_PER_LOOK = 1000


async def watch_definitions(store: Store, planner: Planner, mismatched: dict[str, str]) -> None:
    """Now and then, compare stored definitions with ours, a slice of the tasks at a time:
    a replica that started after this one with another definition stored its own, and is
    found here.

    A task whose stored definition is ours again (every replica redeployed) is no longer
    reported. A store failure is left to the next round (health reports it already).
    """
    start = 0
    while True:
        await anyio.sleep(DEFINITIONS_EVERY)
        if start >= len(planner.tasks):
            start = 0
        window = itertools.islice(planner.tasks.items(), start, start + DEFINITIONS_PER_LOOK)
        tasks = dict(window)
        start += len(tasks)
        try:
            records = await store.load_tasks(list(tasks))
        except StoreError:
            continue
        for name, record in records.items():
            ours = tasks[name].definition
            if record.definition in (None, ours):
                mismatched.pop(name, None)
            elif mismatched.get(name) != record.definition:
                _mismatch(name, record.definition, ours, mismatched)


def _mismatch(name: str, theirs: str, ours: str, mismatched: dict[str, str] | None) -> None:
    _log.warning(
        "task %r is defined differently by another replica sharing this store: there %s; "
        "here %s. Deploy one definition to every replica (or give the tasks different "
        "names); until then each replica fires its own",
        name,
        theirs,
        ours,
    )
    if mismatched is not None:
        mismatched[name] = theirs


def _task(planner: Planner, name: str) -> Task:
    task = planner.tasks.get(name)
    if task is None:
        raise TaskNotFoundError(name, sorted(planner.tasks))
    return task


async def set_stored_state(
    store: Store, planner: Planner, name: str, state: TaskState, now: datetime
) -> bool:
    """Write ``state`` into ``name``'s stored record; the planner is left alone.

    Resuming moves the stored last fire up to ``now``, so the fires missed while the
    task was paused are not replayed at start (as a resume while running does).

    :return: whether the state changed.
    :raises TaskNotFoundError: no task of that name is registered.
    """
    _task(planner, name)
    stored = await store.load_task(name) or planner.task_record(name)
    if stored.state is state:
        return False
    changes: dict[str, Any] = {"state": state}
    if state is TaskState.ACTIVE and stored.last_fire is not None:
        changes["last_fire"] = max(stored.last_fire, now)
    await store.change_task_state(name, dataclasses.replace(stored, **changes))
    return True


async def task_info(store: Store, planner: Planner, name: str, *, running: bool) -> TaskInfo:
    """What ``describe`` returns. Running: state, next fire and failure streak from the
    planner. Before start: as stored, and no next fire (nothing fires yet).

    :raises TaskNotFoundError: no task of that name is registered.
    """
    task = _task(planner, name)
    if running:
        state, failures = planner.state_of(name), planner.consecutive_failures_of(name)
        next_fire = planner.next_fire_of(name)
    else:
        stored = await store.load_task(name) or planner.task_record(name)
        state, failures, next_fire = stored.state, stored.consecutive_failures, None
    last = await store.list_runs(task=name, limit=1)
    return TaskInfo(
        task=task,
        state=state,
        next_fire=next_fire,
        last_run=last[0] if last else None,
        consecutive_failures=failures,
    )


@final
class AddedTasks:
    """Tasks added while running, whose stored state loads in the background.

    Each is registered unarmed; once its record is read (or the read failed: it then
    starts afresh, logged), ``restore`` applies it and arms its trigger, once. Calls
    that act on a task by name :meth:`wait` for that first, so they see its stored state.
    """

    def __init__(self, mismatched: dict[str, str]) -> None:
        self._loading: dict[str, anyio.Event] = {}
        self._mismatched = mismatched

    def __bool__(self) -> bool:
        return bool(self._loading)

    def load(
        self,
        tg: Spawner,
        store: Store,
        planner: Planner,
        task: Task,
        restore: Callable[[str, TaskRecord], object],
    ) -> None:
        """Load ``task``'s stored state in ``tg``, then ``restore(name, record)``."""
        loaded = self._loading[task.name] = anyio.Event()
        tg.start_soon(
            self._load, store, planner, task, restore, loaded, name=f"xtasks load {task.name}"
        )

    async def wait(self, name: str) -> bool:
        """Wait for ``name``'s load if one is going; return whether it waited."""
        loaded = self._loading.get(name)
        if loaded is None:
            return False
        await loaded.wait()
        return True

    async def _load(
        self,
        store: Store,
        planner: Planner,
        task: Task,
        restore: Callable[[str, TaskRecord], object],
        loaded: anyio.Event,
    ) -> None:
        name = task.name
        try:
            try:
                records = await load_records(store, planner, [name], self._mismatched)
            except Exception:  # noqa: BLE001 - the task runs all the same, from scratch
                _log.exception("could not load the stored state of task %r; it starts afresh", name)
                records = {}
            if planner.tasks.get(name) is task:  # not removed (or replaced) meanwhile
                restore(name, records.get(name) or planner.task_record(name))
        finally:
            if self._loading.get(name) is loaded:
                del self._loading[name]
            loaded.set()
