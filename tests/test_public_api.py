"""The public surface is deliberate: a new or removed name shows up as a test diff."""

from __future__ import annotations

import xtasks
import xtasks.abc
import xtasks.testing


def test_all_is_sorted_and_lists_every_public_name() -> None:
    public = sorted(n for n in vars(xtasks) if not n.startswith("_") and n not in _SUBMODULES)
    assert xtasks.__all__ == sorted(xtasks.__all__)
    assert sorted(xtasks.__all__) == public


def test_design_names_are_exported() -> None:
    design = {
        "Scheduler",
        "Task",
        "Every",
        "Cron",
        "At",
        "Priority",
        "RunRecord",
        "RunStatus",
        "XtasksError",
    }
    assert design <= set(xtasks.__all__)


def test_every_error_derives_from_xtasks_error() -> None:
    errors = [getattr(xtasks, n) for n in xtasks.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, xtasks.XtasksError) for e in errors)


def test_submodules_declare_their_public_names() -> None:
    assert xtasks.abc.__all__ == ["Alerter", "Store"]
    assert "FakeClock" in xtasks.testing.__all__


# Submodules, and the `from __future__ import annotations` feature object.
_SUBMODULES = {"abc", "stores", "testing", "cli", "hookspecs", "annotations"}


def test_old_names_of_the_run_cause_warn_and_still_work() -> None:
    import pytest

    record = xtasks.RunRecord(
        id="r",
        task="t",
        status=xtasks.RunStatus.QUEUED,
        cause=xtasks.RunCause.MANUAL,
        scheduled_at=__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC),
    )
    with pytest.warns(DeprecationWarning, match="RunRecord.cause"):
        assert record.trigger is xtasks.RunCause.MANUAL
    with pytest.warns(DeprecationWarning, match="xtasks.RunCause"):
        assert xtasks.TriggerKind is xtasks.RunCause
