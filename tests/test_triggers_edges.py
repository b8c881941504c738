"""Edges of the triggers that their mutants showed untested: a fire exactly at ``after`` is
not "next", comparisons with other types, ``At``'s first fire and ``repr``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from xtasks import At, Cron, Every

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
