"""Task: construction normalises every field; every invalid field is a ConfigError that says
which field, what was given and what is allowed."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from tests import _sample_funcs as samples
from xtasks import CatchUp, ConfigError, Cron, Every, Mode, Overlap, Priority, Task, XtasksError
from xtasks.abc import Trigger

SAMPLES = "tests._sample_funcs"


def noop() -> None:
    pass


async def anoop() -> None:
    pass


def make(**overrides: Any) -> Task:
    fields: dict[str, Any] = {"name": "job", "func": noop, **overrides}
    return Task(fields.pop("name"), fields.pop("func"), **fields)


def config_error(**overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make(**overrides)
    return info.value


# --- construction normalises ------------------------------------------------------------------


def test_defaults_are_canonical() -> None:
    task = Task("job", noop)
    assert task.name == "job"
    assert task.func is noop
    assert task.target == f"{__name__}:noop"
    assert task.args == ()
    assert isinstance(task.kwargs, MappingProxyType)
    assert dict(task.kwargs) == {}
    assert task.trigger is None
    assert task.priority is Priority.NORMAL
    assert task.depends_on == ()
    assert task.mode is Mode.SYNC
    assert (task.max_retries, task.retry_delay, task.retry_backoff) == (0, 0.0, 1.0)
    assert task.timeout is None
    assert task.overlap is Overlap.SKIP
    assert task.catch_up is CatchUp.ONCE
    assert (task.misfire_grace, task.jitter) == (60.0, 0.0)
    assert (task.alert_on_failure, task.alert_after) == (True, 1)
    assert (task.recover, task.enabled, task.description) == (False, True, "")
    assert task.tags == frozenset()
    assert task.is_periodic is False


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("high", Priority.HIGH),
        ("HIGH", Priority.HIGH),
        (" Low ", Priority.LOW),
        ("haute", Priority.HIGH),
        ("Normale", Priority.NORMAL),
        ("BASSE", Priority.LOW),
        (Priority.LOW, Priority.LOW),
    ],
)
def test_priority_accepts_english_and_french_in_any_case(given: Any, expected: Priority) -> None:
    task = make(priority=given)
    assert task.priority is expected
    assert Priority.parse(given) is expected


def test_priority_rank_orders_high_first() -> None:
    assert [p.rank for p in Priority] == [0, 1, 2]
    assert sorted(["low", "high", "normal"], key=lambda p: Priority.parse(p).rank) == [
        "high",
        "normal",
        "low",
    ]
    assert list(Priority) == [Priority.HIGH, Priority.NORMAL, Priority.LOW]  # aliases hidden


def test_enums_are_strings_and_parse_case_insensitively() -> None:
    assert str(Priority.HIGH) == "high"
    assert isinstance(Mode.PROCESS, str)
    assert Mode.PROCESS + "" == "process"
    assert f"{CatchUp.ALL}" == "all"
    assert make(overlap="QUEUE", catch_up="All").overlap is Overlap.QUEUE
    assert make(catch_up="All").catch_up is CatchUp.ALL
    assert Mode.parse("Sync") is Mode.SYNC


def test_durations_accept_timedelta_and_ints_and_store_float_seconds() -> None:
    task = make(
        retry_delay=timedelta(minutes=2),
        retry_backoff=2,
        timeout=timedelta(milliseconds=1500),
        misfire_grace=30,
        jitter=timedelta(seconds=0),
    )
    assert (task.retry_delay, task.retry_backoff, task.timeout) == (120.0, 2.0, 1.5)
    assert (task.misfire_grace, task.jitter) == (30.0, 0.0)
    for value in (task.retry_delay, task.retry_backoff, task.timeout, task.misfire_grace):
        assert type(value) is float


def test_depends_on_str_is_one_name_and_duplicates_go_keeping_order() -> None:
    assert make(depends_on="other").depends_on == ("other",)
    assert make(depends_on=["b", "a", "b", "c", "a"]).depends_on == ("b", "a", "c")
    assert make(depends_on=(n for n in ["x.y", "z:1"])).depends_on == ("x.y", "z:1")


def test_tags_str_is_one_tag_and_iterables_become_frozenset() -> None:
    assert make(tags="billing").tags == frozenset({"billing"})
    assert make(tags=["a", "b", "a"]).tags == frozenset({"a", "b"})


def test_args_and_kwargs_are_copied_and_read_only() -> None:
    kwargs = {"b": 2}
    args = [1]
    task = make(func=samples.sync_job, args=args, kwargs=kwargs)
    kwargs["b"] = 99
    args.append(5)
    assert task.args == (1,)
    assert task.kwargs == {"b": 2}
    with pytest.raises(TypeError):
        task.kwargs["b"] = 3  # type: ignore[index]


def test_func_string_is_resolved_at_construction() -> None:
    task = make(func=f"{SAMPLES}:sync_job", args=(1,))
    assert task.func is samples.sync_job
    assert task.target == f"{SAMPLES}:sync_job"
    assert task.mode is Mode.SYNC

    nested = make(func=f"{SAMPLES}:Jobs.static_job")
    assert nested.func is samples.Jobs.static_job
    assert make(func=f"{SAMPLES}:async_job").mode is Mode.ASYNC


def test_target_names_callables_and_falls_back_to_repr() -> None:
    assert make(func=samples.sync_job, args=(1,)).target == f"{SAMPLES}:sync_job"
    assert make(func=samples.Jobs.static_job).target == f"{SAMPLES}:Jobs.static_job"
    part = functools.partial(samples.sync_job, 1)
    assert make(func=part).target == repr(part)


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        pytest.param(anoop, Mode.ASYNC, id="async-def"),
        pytest.param(noop, Mode.SYNC, id="sync-def"),
        pytest.param(functools.partial(samples.async_job, 1), Mode.ASYNC, id="partial-of-async"),
        pytest.param(
            functools.partial(functools.partial(samples.async_job), 1),
            Mode.ASYNC,
            id="nested-partial-of-async",
        ),
        pytest.param(functools.partial(samples.sync_job, 1), Mode.SYNC, id="partial-of-sync"),
        pytest.param(samples.AsyncCallable(), Mode.ASYNC, id="async-call-instance"),
        pytest.param(
            functools.partial(samples.AsyncCallable(), 1), Mode.ASYNC, id="partial-of-instance"
        ),
        pytest.param(samples.SyncCallable(), Mode.SYNC, id="sync-call-instance"),
        pytest.param(lambda: None, Mode.SYNC, id="lambda"),
        pytest.param(samples.Jobs, Mode.SYNC, id="class"),
        pytest.param(samples.Jobs.class_job, Mode.SYNC, id="classmethod"),
        pytest.param(print, Mode.SYNC, id="builtin"),
    ],
)
def test_mode_is_inferred_from_the_callable(func: Any, expected: Mode) -> None:
    assert make(func=func).mode is expected


def test_explicit_modes_that_fit_are_kept() -> None:
    assert make(func=anoop, mode="ASYNC").mode is Mode.ASYNC
    assert make(func=noop, mode=Mode.SYNC).mode is Mode.SYNC


def test_process_mode_accepts_module_level_functions() -> None:
    assert make(func=samples.cpu_job, args=(10,), mode="process").mode is Mode.PROCESS
    assert make(func=f"{SAMPLES}:cpu_job", args=(10,), mode="process").mode is Mode.PROCESS
    assert make(func=samples.Jobs.static_job, mode="process").mode is Mode.PROCESS
    assert make(func=noop, mode="process").mode is Mode.PROCESS


def test_process_mode_rejects_what_a_worker_cannot_import() -> None:
    def local() -> None:
        pass

    for func in (local, lambda: None, functools.partial(samples.cpu_job, 3)):
        err = config_error(func=func, mode="process")
        assert err.field == "mode"
        assert "module level" in str(err)
        assert "process" in str(err)
    assert "inside a function" in str(config_error(func=local, mode="process"))


def test_signature_that_cannot_be_inspected_skips_the_bind_check() -> None:
    with pytest.raises(ValueError):
        inspect.signature(max)
    assert make(func=max, args=()).func is max  # max() fails at run time, not here


def test_kwargs_named_like_internal_parameters_bind() -> None:
    def takes(func: int, target: int, task: int) -> None:
        pass

    assert make(func=takes, kwargs={"func": 1, "target": 2, "task": 3}).kwargs["task"] == 3


# --- invalid fields -----------------------------------------------------------------------------

PATTERN = "[A-Za-z0-9_.:-]{1,200}"

BAD_FIELDS: list[Any] = [
    # (field given, value, field reported, words the message must contain)
    ("name", "", "name", [PATTERN, "''"]),
    ("name", "has space", "name", [PATTERN, "'has space'"]),
    ("name", "x" * 201, "name", [PATTERN, "1 to 200"]),
    ("name", "trailing\n", "name", [PATTERN]),
    ("name", "é", "name", [PATTERN, "'é'"]),
    ("name", 12, "name", [PATTERN, "12"]),
    ("func", 42, "func", ["callable", "42", "package.module:function"]),
    ("func", None, "func", ["callable", "None"]),
    ("func", SAMPLES, "func", [repr(SAMPLES), "package.module:function", "':'"]),
    ("func", ":noop", "func", ["package.module:function"]),
    ("func", f"{SAMPLES}:", "func", ["package.module:function"]),
    ("func", f"{SAMPLES}:missing", "func", [repr(SAMPLES), "'missing'", "no attribute"]),
    ("func", f"{SAMPLES}:sync_jb", "func", ["'sync_jb'", "did you mean 'sync_job'"]),
    ("func", f"{SAMPLES}:Jobs.nope", "func", ["'Jobs.nope'", "'nope'"]),
    ("func", f"{SAMPLES}:NOT_CALLABLE", "func", ["NOT_CALLABLE", "int", "not a callable"]),
    ("args", "abc", "args", ["'abc'", "tuple or list", "args=(value,)"]),
    ("args", 5, "args", ["5", "tuple or list"]),
    ("kwargs", ["a"], "kwargs", ["mapping", "['a']"]),
    ("kwargs", {1: "a"}, "kwargs", ["mapping", "names (str)"]),
    ("priority", "urgent", "priority", ["'urgent'", "'high'", "'low'", "'haute'", "'basse'"]),
    ("priority", 1, "priority", ["got 1", "'normal'", "'normale'"]),
    ("priority", None, "priority", ["None"]),
    ("overlap", "never", "overlap", ["'never'", "'skip'", "'queue'", "'allow'"]),
    ("catch_up", "sometimes", "catch_up", ["'sometimes'", "'once'", "'skip'", "'all'"]),
    ("mode", "turbo", "mode", ["'turbo'", "'async'", "'sync'", "'process'"]),
    ("depends_on", "job", "depends_on", ["'job'", "itself"]),
    ("depends_on", ["ok", "job"], "depends_on", ["itself"]),
    ("depends_on", "bad name", "depends_on", ["'bad name'", PATTERN]),
    ("depends_on", [""], "depends_on", ["''", PATTERN]),
    ("depends_on", [1], "depends_on", ["strings", "1"]),
    ("depends_on", 5, "depends_on", ["list of strings", "5"]),
    ("depends_on", {"a": 1}, "depends_on", ["list of strings"]),
    ("depends_on", b"ab", "depends_on", ["list of strings", "b'ab'"]),
    ("max_retries", -1, "max_retries", ["-1", "integer >= 0"]),
    ("max_retries", True, "max_retries", ["True", "bool", "integer >= 0"]),
    ("max_retries", 1.5, "max_retries", ["1.5", "integer >= 0"]),
    ("max_retries", "3", "max_retries", ["'3'", "integer >= 0"]),
    ("alert_after", 0, "alert_after", ["got 0", "integer >= 1"]),
    ("alert_after", False, "alert_after", ["False", "integer >= 1"]),
    ("retry_backoff", 0.5, "retry_backoff", ["0.5", ">= 1"]),
    ("retry_backoff", math.nan, "retry_backoff", ["nan", "finite", ">= 1"]),
    ("retry_backoff", math.inf, "retry_backoff", ["inf", "finite"]),
    ("retry_backoff", True, "retry_backoff", ["True", "bool"]),
    ("retry_backoff", timedelta(seconds=2), "retry_backoff", ["timedelta", ">= 1"]),
    ("timeout", 0, "timeout", ["got 0", "> 0", "or None"]),
    ("timeout", -5, "timeout", ["-5", "> 0"]),
    ("timeout", timedelta(0), "timeout", ["timedelta(0)", "> 0"]),
    ("timeout", math.inf, "timeout", ["inf", "finite"]),
    ("timeout", "10", "timeout", ["'10'", "str", "seconds"]),
    ("timeout", False, "timeout", ["False", "bool"]),
    ("alert_on_failure", "yes", "alert_on_failure", ["'yes'", "True or False"]),
    ("recover", 1, "recover", ["got 1", "True or False"]),
    ("enabled", None, "enabled", ["None", "True or False"]),
    ("description", 5, "description", ["5", "string"]),
    ("tags", [1], "tags", ["strings", "1"]),
    ("tags", 5, "tags", ["list of strings", "5"]),
]
for _duration in ("retry_delay", "misfire_grace", "jitter"):
    BAD_FIELDS += [
        (_duration, -1, _duration, ["-1", ">= 0", "seconds", "timedelta"]),
        (_duration, math.nan, _duration, ["nan", "finite", ">= 0"]),
        (_duration, -math.inf, _duration, ["-inf", "finite"]),
        (_duration, math.inf, _duration, ["inf", "finite"]),
        (_duration, True, _duration, ["True", "bool"]),
        (_duration, "5", _duration, ["'5'", "str"]),
        (_duration, None, _duration, ["None"]),
        (_duration, timedelta(seconds=-1), _duration, ["timedelta(days=-1", ">= 0"]),
    ]


@pytest.mark.parametrize(
    ("given", "value", "field", "words"),
    BAD_FIELDS,
    ids=[f"{row[0]}={row[1]!r}"[:60] for row in BAD_FIELDS],
)
def test_invalid_field_is_a_config_error_naming_field_value_and_rule(
    given: str, value: Any, field: str, words: list[str]
) -> None:
    err = config_error(**{given: value})
    assert isinstance(err, XtasksError)
    assert err.field == field
    if given != "name":
        assert err.task == "job"
    message = str(err)
    assert f"field {field!r}" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        pytest.param(
            {"func": samples.sync_job},
            "args",
            ["sync_job(a, b=1, *, scale=1)", "missing a required argument: 'a'"],
            id="missing-arg",
        ),
        pytest.param(
            {"func": samples.sync_job, "args": (1, 2, 3)},
            "args",
            ["args=(1, 2, 3)", "too many positional arguments", f"{SAMPLES}:sync_job("],
            id="too-many",
        ),
        pytest.param(
            {"func": samples.sync_job, "args": (1,), "kwargs": {"c": 1}},
            "kwargs",
            ["kwargs={'c': 1}", "unexpected keyword argument 'c'"],
            id="unknown-keyword",
        ),
        pytest.param(
            {"func": f"{SAMPLES}:async_job", "args": (1, 2)},
            "args",
            ["async_job(x=0)", "too many positional arguments"],
            id="string-func",
        ),
    ],
)
def test_args_that_do_not_bind_quote_the_signature(
    overrides: dict[str, Any], field: str, words: list[str]
) -> None:
    err = config_error(**overrides)
    assert err.field == field
    for word in words:
        assert word in str(err), f"{word!r} not in {str(err)!r}"


def _positional(a: int) -> None: ...
def _positional_default(a: int = 1, /, b: int = 2) -> None: ...
def _keyword(*, a: int) -> None: ...
def _keyword_default(*, a: int = 1) -> None: ...
def _variadic(*args: Any, **kwargs: Any) -> None: ...
async def _async_positional(a: int) -> None: ...
@functools.wraps(_positional)
def _wraps_positional(*args: Any, **kwargs: Any) -> None: ...
def _declared(*args: Any) -> None: ...


_declared.__signature__ = inspect.signature(_positional)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "func",
    [
        noop,
        anoop,
        _positional,
        _positional_default,
        _keyword,
        _keyword_default,
        _variadic,
        _async_positional,
        _wraps_positional,
        _declared,
        functools.partial(_positional, 1),
        lambda a=1: a,
    ],
)
def test_a_task_without_arguments_is_accepted_exactly_when_they_bind(func: Any) -> None:
    """Plain functions are checked from their code, the others by ``inspect``: both must
    agree with ``inspect.signature(func).bind()`` (``__wrapped__``, ``__signature__``)."""
    try:
        inspect.signature(func).bind()
    except TypeError:
        with pytest.raises(ConfigError, match="missing a required argument"):
            Task("job", func)
    else:
        Task("job", func)


@pytest.mark.parametrize(
    ("func", "mode", "words"),
    [
        pytest.param(noop, "async", ["'async'", "synchronous", "'sync' or 'process'"], id="a"),
        pytest.param(anoop, "sync", ["'sync'", "is async", "mode='async'"], id="b"),
        pytest.param(anoop, "process", ["'process'", "is async", "mode='async'"], id="c"),
        pytest.param(samples.AsyncCallable(), "sync", ["is async"], id="d"),
    ],
)
def test_explicit_mode_that_contradicts_the_callable(
    func: Any, mode: str, words: list[str]
) -> None:
    err = config_error(func=func, mode=mode)
    assert err.field == "mode"
    for word in words:
        assert word in str(err), f"{word!r} not in {str(err)!r}"


def test_unimportable_module_chains_the_original_error() -> None:
    err = config_error(func="no_such_module_xyz.sub:run")
    assert err.field == "func"
    assert "'no_such_module_xyz.sub'" in str(err)
    assert "ModuleNotFoundError" in str(err)
    assert isinstance(err.__cause__, ModuleNotFoundError)


def test_priority_parse_error_lists_english_and_french() -> None:
    with pytest.raises(ConfigError) as info:
        Priority.parse("urgent")
    assert info.value.field == "priority"
    for word in ("'high'", "'normal'", "'low'", "'haute'", "'normale'", "'basse'", "'urgent'"):
        assert word in str(info.value)


# --- triggers -------------------------------------------------------------------------------------


class Never(Trigger):
    """The smallest possible Trigger: any subclass is accepted, not only the built-in ones."""

    def next_fire(self, after: datetime) -> datetime | None:
        return None


@pytest.mark.parametrize(
    "trigger", [Every(minutes=5), Cron("*/5 * * * *"), Never()], ids=["every", "cron", "custom"]
)
def test_trigger_instance_is_kept_and_makes_the_task_periodic(trigger: Trigger) -> None:
    task = make(trigger=trigger)
    assert task.trigger is trigger
    assert task.is_periodic is True
    assert make(trigger=None).is_periodic is False


@pytest.mark.parametrize("value", ["every 5m", 300, timedelta(minutes=5), Every])
def test_trigger_of_another_type_is_rejected(value: Any) -> None:
    err = config_error(trigger=value)
    assert err.field == "trigger"
    for word in ("Every(...)", "Cron(...)", "At(...)", "None", type(value).__name__, repr(value)):
        assert word in str(err)


# --- immutability, equality, replace --------------------------------------------------------------


def test_task_is_frozen_slotted_and_hashable_by_name() -> None:
    task = make(kwargs={}, tags=["a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "other"  # type: ignore[misc]
    assert not hasattr(task, "__dict__")
    assert hash(task) == hash("job")
    same = make(kwargs={}, tags=["a"])
    assert same == task
    assert len({task, same}) == 1
    assert make(max_retries=2) != task


def test_a_subclass_of_task_is_built_checked_and_frozen_like_task() -> None:
    """Task fills its fields through a twin class of the same layout; a subclass (which
    may have another layout, here a __dict__) is filled one field at a time instead."""

    class Labelled(Task):
        pass

    task = Labelled("sub", samples.async_job, max_retries=2, tags="x")
    assert type(task) is Labelled
    assert (task.max_retries, task.tags, task.runs_on) == (2, frozenset({"x"}), "async")
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.max_retries = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="max_retries"):
        Labelled("sub", samples.async_job, max_retries=-1)
    assert make(func=f"{__name__}:noop") == make(func=noop)  # target is display only


def test_replace_returns_a_new_validated_task() -> None:
    task = make(func=f"{SAMPLES}:sync_job", args=(1,), priority="haute")
    other = task.replace(max_retries=3, retry_delay=timedelta(seconds=5), depends_on="up")
    assert (other.max_retries, other.retry_delay, other.depends_on) == (3, 5.0, ("up",))
    assert other.priority is Priority.HIGH
    assert other.target == f"{SAMPLES}:sync_job"
    assert task.max_retries == 0
    with pytest.raises(ConfigError, match="max_retries"):
        task.replace(max_retries=-1)
    with pytest.raises(ConfigError, match="itself"):
        task.replace(name="up", depends_on=["up"])
    with pytest.raises(ConfigError, match="too many positional"):
        task.replace(args=(1, 2, 3))
    with pytest.raises(ConfigError, match="no option 'max_retry' .did you mean 'max_retries'"):
        task.replace(max_retry=1)


def test_replace_with_a_new_func_infers_the_mode_again_but_keeps_process() -> None:
    task = make(func=noop)
    assert task.replace(func=anoop).mode is Mode.ASYNC
    assert task.replace(func=anoop).target == f"{__name__}:anoop"
    process = make(func=samples.cpu_job, args=(1,), mode="process")
    assert process.replace(func=samples.sync_job).mode is Mode.PROCESS
    with pytest.raises(ConfigError, match="is async"):
        process.replace(func=samples.async_job, args=())


def test_the_constructor_takes_every_field_with_its_declared_default() -> None:
    """Task's __init__ is written by hand (it checks and stores each option once): it must
    take exactly the dataclass's fields, with their defaults, or a new field would be
    silently unsettable or differ between Task(...) and dataclasses.replace."""
    params = inspect.signature(Task.__init__).parameters
    taken = {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    declared = {f.name: f for f in dataclasses.fields(Task) if f.init}
    assert set(taken) == set(declared) - {"name", "func"}
    for name, param in taken.items():
        default = declared[name].default
        if name in ("mode", "kwargs"):  # computed from the function / shared empty mapping
            continue
        assert param.default == default, name
    task = Task("t", samples.async_job)
    for name, f in declared.items():
        if name not in ("name", "func", "mode", "kwargs"):
            assert getattr(task, name) == f.default, name
    assert dict(task.kwargs) == {}
