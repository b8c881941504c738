"""Edges of the triggers that their mutants showed untested: a fire exactly at ``after`` is
not "next", comparisons with other types, ``At``'s first fire and ``repr``."""

from __future__ import annotations

import sys
import textwrap
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from xtasks import At, Cron, Every, Scheduler, ShortIntervalWarning, Task
from xtasks.abc import Trigger

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
def test_a_cron_fire_exactly_at_after_is_not_the_next_one(tz: str) -> None:
    """next_fire is strictly after its argument, in a zone with offset changes too."""
    cron = Cron("0 * * * *", tz=tz)
    fire = cron.next_fire(datetime(2026, 5, 4, 10, 7, tzinfo=UTC))
    assert fire is not None
    assert cron.next_fire(fire) == fire + timedelta(hours=1)
    assert cron.next_fire(fire - timedelta(microseconds=1)) == fire


def test_a_cron_is_never_equal_to_another_type() -> None:
    cron = Cron("*/5 * * * *", tz=PARIS)
    assert (cron == "*/5 * * * *") is False
    assert (cron != "*/5 * * * *") is True
    assert cron == Cron("*/5 * * * *", tz="Europe/Paris")
    assert cron != Every(minutes=5)


def test_at_fires_at_its_instant_even_registered_after_it() -> None:
    """A one-off's first fire is its instant, past or not: catch-up decides what happens."""
    when = datetime(2026, 1, 1, 12, tzinfo=UTC)
    at = At(when)
    assert at.first_fire(when - timedelta(days=1)) == when
    assert at.first_fire(when + timedelta(days=1)) == when
    assert at.next_fire(when - timedelta(seconds=1)) == when
    assert at.next_fire(when) is None


def test_at_repr_and_description_name_the_instant() -> None:
    when = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert repr(At(when)) == f"At({when!r})"
    assert At(when).describe() == "at 2026-01-01T12:00:00+00:00"


def test_triggers_are_immutable_and_hashable() -> None:
    """Tasks hold triggers and compare them (a reload that changes nothing keeps the task):
    a trigger cannot change under them, and can key a dict."""
    when = datetime(2026, 1, 1, 12, tzinfo=UTC)
    triggers = [At(when), Every(minutes=5), Cron("0 * * * *", tz=PARIS)]
    assert len({*triggers, At(when), Every(minutes=5)}) == 3
    for trigger, field in zip(triggers, ["when", "period", "expression"], strict=True):
        with pytest.raises(AttributeError):
            setattr(trigger, field, getattr(trigger, field))


def test_a_trigger_of_ones_own_first_fires_at_its_next_fire() -> None:
    """A plugin's trigger that defines only ``next_fire`` first fires where it says."""

    class Weekly(Trigger):
        def next_fire(self, after: datetime) -> datetime | None:
            return after + timedelta(days=7)

    registered = datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert Weekly().first_fire(registered) == registered + timedelta(days=7)


def test_an_anchored_short_every_given_to_a_task_does_not_warn_again() -> None:
    """The user's ``Every(seconds=1)`` warned at its line; its anchored copy (the grid fixed
    by hand) is the same interval: a task made with it neither warns again nor fails."""
    with pytest.warns(ShortIntervalWarning):
        every = Every(seconds=1)
    anchored = every.anchored(datetime(2026, 3, 1, tzinfo=UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = Task("tick", _tick, trigger=anchored)
    assert task.trigger == anchored


def _tick() -> None:
    pass


def test_a_short_seed_interval_whose_entry_is_not_in_the_source_warns_at_the_users_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the entry of a seed cannot be found in its module's source (built by code, not
    written as a dict literal), the warning points at the user's own line that loaded it,
    not inside xtasks."""
    source = """\
        def tick():
            pass


        PLUGIN_TASKS = [dict(name=n, function=tick, interval_seconds=s) for n, s in [("fast", 2)]]
    """
    (tmp_path / "built_seed_plugin.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    import built_seed_plugin  # type: ignore[import-not-found]

    line = sys._getframe().f_lineno + 2  # the Scheduler(...) line below
    with pytest.warns(ShortIntervalWarning) as record:
        Scheduler(plugins=[built_seed_plugin])
    assert len(record) == 1
    assert "task 'fast': Every(seconds=2)" in str(record[0].message)
    assert "PLUGIN_TASKS[0]" in str(record[0].message)
    assert (record[0].filename, record[0].lineno) == (__file__, line)


@pytest.mark.anyio
async def test_an_every_built_by_a_running_task_warns_at_the_tasks_own_line() -> None:
    """User code run by xtasks (a task's body) is still the user's: its short ``Every``
    warns at its own line, as anywhere else."""
    built: list[tuple[Every, int]] = []

    async def plan_next() -> None:
        built.append((Every(seconds=1), sys._getframe().f_lineno))

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("plan", plan_next))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with scheduler:
            handle = await scheduler.trigger("plan")
            with anyio.fail_after(10):
                await handle.wait()
    [(_, line)] = built
    shorts = [w for w in caught if issubclass(w.category, ShortIntervalWarning)]
    assert [(w.filename, w.lineno) for w in shorts] == [(__file__, line)]


def test_a_cron_in_a_zone_read_from_a_file_has_words_and_identity() -> None:
    """A zone built from a TZif file has no IANA key: the cron's words show the zone as
    Python does, and two crons are equal only in that very zone."""
    with open(tzdata_path("Europe/Paris"), "rb") as f:
        keyless = ZoneInfo.from_file(f, key=None)
    cron = Cron("0 9 * * *", tz=keyless)
    assert cron.describe() == f"cron '0 9 * * *' ({keyless})"
    assert repr(cron) == f"Cron('0 9 * * *', tz={str(keyless)!r})"
    assert cron == Cron("0 9 * * *", tz=keyless)
    assert cron != Cron("0 9 * * *", tz=PARIS)


def test_crons_in_two_copies_of_one_named_zone_are_equal() -> None:
    """Equality goes by the zone's name: an uncached copy of Europe/Paris is the same zone."""
    copy = ZoneInfo.no_cache("Europe/Paris")
    assert copy is not PARIS
    assert Cron("0 9 * * *", tz=copy) == Cron("0 9 * * *", tz=PARIS)
    assert hash(Cron("0 9 * * *", tz=copy)) == hash(Cron("0 9 * * *", tz=PARIS))


def tzdata_path(key: str) -> Path:
    """The TZif file of ``key`` on this machine: the system's, else the tzdata package's."""
    import importlib.resources
    import zoneinfo

    for root in zoneinfo.TZPATH:
        if (candidate := Path(root, key)).is_file():
            return candidate
    return Path(str(importlib.resources.files("tzdata").joinpath("zoneinfo", *key.split("/"))))
