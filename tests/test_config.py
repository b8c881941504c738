"""Config files: a plugin's file, then the application's, override tasks by name. Every
mistake a person can make in them is reported at its file, line and dotted key; the seed
format (``PLUGIN_TASKS`` dicts) loads unchanged."""

from __future__ import annotations

import textwrap
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from xtasks._config import Config, merge
from xtasks._config_file import ConfigFile, ConfigFileErrors, load_config
from xtasks._config_values import expand_env
from xtasks._errors import ConfigError, ConfigFileError, CronError, SecretInConfigWarning
from xtasks._seed import task_from_seed
from xtasks._task import Mode, Priority, Task
from xtasks._triggers import Cron, Every

if TYPE_CHECKING:
    from pathlib import Path

ASYNC_JOB = "tests._sample_funcs:async_job"
SYNC_JOB = "tests._sample_funcs:Jobs.static_job"  # seed tasks take no arguments
ORIGIN = "PLUGIN_TASKS[2] of xcore_billing.tasks"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(directory: Path, text: str, name: str = "config.yaml", **kw: Any) -> ConfigFile:
    return load_config(write(directory, name, text), **kw)


def problems_of(directory: Path, text: str, **kw: Any) -> ConfigFileErrors:
    with pytest.raises(ConfigFileErrors) as info:
        load(directory, text, **kw)
    return info.value


def export(**fields: Any) -> Task:
    return Task("export", ASYNC_JOB, **fields)


# --- the list form (xcore's documented config.yaml) ----------------------------------------

XCORE_LIST = """
tasks:
  - name: "sync_donnees"
    alert_on_failure: true
    max_retries: 3
    retry_delay_seconds: 60
"""


def test_the_list_form_overrides_like_the_mapping_form(tmp_path: Path) -> None:
    listed = load(tmp_path, XCORE_LIST, name="list.yaml")
    mapped = load(
        tmp_path,
        """
        tasks:
          sync_donnees:
            alert_on_failure: true
            max_retries: 3
            retry_delay_seconds: 60
        """,
        name="map.yaml",
    )
    assert listed.tasks == mapped.tasks
    task = merge([listed]).apply(Task("sync_donnees", ASYNC_JOB, alert_on_failure=False))
    assert (task.alert_on_failure, task.max_retries, task.retry_delay) == (True, 3, 60)
    assert listed.position("tasks.sync_donnees.max_retries") == (4, 5)


def test_list_and_mapping_files_merge_the_later_winning(tmp_path: Path) -> None:
    plugin = load(tmp_path, XCORE_LIST, name="plugin.yaml")
    app = load(tmp_path, "tasks:\n  sync_donnees:\n    max_retries: 5\n", name="app.yaml")
    task = merge([plugin, app]).apply(Task("sync_donnees", ASYNC_JOB))
    assert (task.max_retries, task.retry_delay, task.alert_on_failure) == (5, 60, True)


@pytest.mark.parametrize(
    ("mapping", "listed"),
    [
        (
            "tasks:\n  export:\n    max_retries: lots\n",
            "tasks:\n  - name: export\n    max_retries: lots\n",
        ),
        (
            "tasks:\n  export:\n    retry_delay_secs: 5\n",
            "tasks:\n  - name: export\n    retry_delay_secs: 5\n",
        ),
    ],
)
def test_both_forms_report_the_same_error_at_the_same_place(
    tmp_path: Path, mapping: str, listed: str
) -> None:
    one = problems_of(tmp_path, mapping)
    other = problems_of(tmp_path, listed)
    assert (other.line, other.column, other.key, other.message) == (
        one.line,
        one.column,
        one.key,
        one.message,
    )


def test_a_value_the_task_rejects_points_into_the_list(tmp_path: Path) -> None:
    file = load(tmp_path, "tasks:\n  - name: export\n    max_retries: -1\n")
    with pytest.raises(ConfigFileErrors) as info:
        merge([file]).apply(export())
    assert (info.value.line, info.value.key) == (3, "tasks.export.max_retries")
    [error] = merge([file]).unknown_tasks(["fetch"])
    assert (error.line, error.column, error.key) == (2, 5, "tasks.export")


def test_a_duplicate_name_in_the_list_is_an_error_at_its_line(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path,
        """
        tasks:
          - name: export
            max_retries: 1
          - name: fetch
          - name: export
            max_retries: 2
        """,
    )
    assert (error.line, error.column, error.key) == (5, 11, "tasks.2.name")
    assert "duplicate task 'export': the entry at line 2 names it too" in str(error)


def test_a_list_entry_needs_a_name_and_a_mapping(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path,
        """
        tasks:
          - max_retries: 1
          - name: [a]
          - just_a_name
        """,
    )
    found = [(p.line, p.key) for p in error.problems]
    assert found == [(2, "tasks.0"), (3, "tasks.1.name"), (4, "tasks.2")]
    assert "missing required key 'name'" in str(error.problems[0])
    assert "expected a task name; got ['a'] (list)" in str(error.problems[1])
    assert "expected a mapping ('- name: <task>'" in str(error.problems[2])


def test_a_list_entry_name_longer_than_a_task_name_is_refused(tmp_path: Path) -> None:
    name = "n" * 5_000
    keys = "".join(f"    k{i}: 1\n" for i in range(500))  # each key would copy the name
    error = problems_of(tmp_path, f"tasks:\n  - name: {name}\n{keys}")
    assert (error.line, error.key) == (2, "tasks.0.name")
    assert "a task name has at most 200 characters; this one has 5,000" in str(error)
    assert len(error.problems) == 1


@pytest.mark.parametrize("key", ["async", "function"])
@pytest.mark.parametrize("form", ["tasks:\n  - name: export\n", "tasks:\n  export:\n"])
def test_seed_keys_that_only_code_sets_are_explained(tmp_path: Path, key: str, form: str) -> None:
    error = problems_of(tmp_path, f"{form}    {key}: true\n")
    assert (error.line, error.key) == (3, f"tasks.export.{key}")
    assert "set in code (PLUGIN_TASKS or Task), not in YAML; remove it" in str(error)
    assert len(error.problems) == 1  # not a second "unknown key"


# --- precedence and overrides -------------------------------------------------------------


def test_application_file_wins_field_by_field_over_the_plugin_file(tmp_path: Path) -> None:
    plugin = load(
        tmp_path,
        """
        tasks:
          export:
            cron: "0 2 * * *"
            max_retries: 2
            retry_delay_seconds: 30
        """,
        "plugin.yaml",
    )
    app = load(tmp_path, "tasks:\n  export:\n    max_retries: 5\n", "app.yaml")

    task = merge([plugin, app]).apply(export(trigger=Every(minutes=10)))

    assert task is not None
    assert task.trigger == Cron("0 2 * * *")  # from the plugin file, kept
    assert task.max_retries == 5  # the application's value wins
    assert task.retry_delay == 30.0  # *_seconds maps to the Task field without the suffix
    assert merge([app, plugin]).apply(export()).max_retries == 2


def test_every_task_field_can_be_overridden(tmp_path: Path) -> None:
    config = merge(
        [
            load(
                tmp_path,
                """
                tasks:
                  export:
                    priority: haute
                    depends_on: [fetch]
                    retry_backoff: 2
                    timeout_seconds: 90
                    overlap: queue
                    catch_up: all
                    misfire_grace_seconds: 600
                    jitter_seconds: 5
                    alert_on_failure: false
                    alert_after: 3
                    recover: true
                    description: nightly export
                    tags: [billing, nightly]
                    alert_channels: [ops]
                """,
            )
        ]
    )
    task = config.apply(export())
    assert task is not None
    assert (task.priority, task.depends_on, task.retry_backoff) == (Priority.HIGH, ("fetch",), 2.0)
    assert (task.timeout, task.overlap, task.catch_up) == (90.0, "queue", "all")
    assert (task.misfire_grace, task.jitter, task.alert_on_failure) == (600.0, 5.0, False)
    assert (task.alert_after, task.recover, task.description) == (3, True, "nightly export")
    assert task.tags == {"billing", "nightly"}
    assert config.alert_channels_for("export") == ["ops"]
    assert config.alert_channels_for("other") is None


def test_a_task_the_config_does_not_name_is_unchanged(tmp_path: Path) -> None:
    task = export()
    assert merge([load(tmp_path, "tasks:\n  other: {max_retries: 1}\n")]).apply(task) is task
    assert merge([]).apply(task) is task


def test_enabled_false_disables_the_task_and_a_later_file_can_enable_it(tmp_path: Path) -> None:
    plugin = load(tmp_path, "tasks:\n  export:\n    enabled: false\n", "plugin.yaml")
    app = load(tmp_path, "tasks:\n  export:\n    enabled: true\n", "app.yaml")

    assert merge([plugin]).apply(export()) == export(enabled=False)  # as Task(enabled=False)
    assert merge([plugin, app]).apply(export()) == export()
    assert merge([app]).apply(export(enabled=False)) == export(enabled=True)


def test_interval_cron_and_timezone_overrides_build_the_right_trigger(tmp_path: Path) -> None:
    def trigger_after(text: str, task: Task) -> object:
        applied = merge([load(tmp_path, text)]).apply(task)
        assert applied is not None
        return applied.trigger

    nightly = export(trigger=Cron("30 2 * * *", tz="Europe/Paris"))
    interval = "tasks:\n  export:\n    interval_seconds: 300\n"
    assert trigger_after(interval, nightly) == Every(minutes=5)
    cron = 'tasks:\n  export:\n    cron: "0 3 * * *"\n    timezone: America/New_York\n'
    assert trigger_after(cron, export()) == Cron("0 3 * * *", tz="America/New_York")
    # a new expression keeps the task's own time zone; a new zone keeps its expression
    assert trigger_after('tasks:\n  export: {cron: "0 4 * * *"}\n', nightly) == Cron(
        "0 4 * * *", tz="Europe/Paris"
    )
    assert trigger_after("tasks:\n  export: {timezone: UTC}\n", nightly) == Cron("30 2 * * *")
    assert trigger_after("tasks:\n  export: {cron: null}\n", nightly) is None  # on demand only


def test_a_later_interval_replaces_an_earlier_cron_and_its_timezone(tmp_path: Path) -> None:
    plugin = load(
        tmp_path, "tasks:\n  export: {cron: '0 2 * * *', timezone: Europe/Paris}\n", "p.yaml"
    )
    app = load(tmp_path, "tasks:\n  export: {interval_seconds: 60}\n", "a.yaml")
    task = merge([plugin, app]).apply(export())
    assert task is not None and task.trigger == Every(minutes=1)
    task = merge([app, plugin]).apply(export())
    assert task is not None and task.trigger == Cron("0 2 * * *", tz="Europe/Paris")


def test_interval_and_cron_in_one_file_is_an_error(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path, "tasks:\n  export:\n    interval_seconds: 60\n    cron: '@daily'\n"
    )
    assert (error.line, error.key) == (4, "tasks.export.cron")
    assert "interval_seconds or cron, not both" in str(error)


def test_timezone_without_a_cron_trigger_is_an_error_at_its_line(tmp_path: Path) -> None:
    config = merge([load(tmp_path, "tasks:\n  export:\n    timezone: Europe/Paris\n")])
    with pytest.raises(ConfigFileError) as info:
        config.apply(export(trigger=Every(minutes=1)))
    assert (info.value.line, info.value.key) == (3, "tasks.export.timezone")
    assert "set cron as well" in str(info.value)


# --- errors a Task finds, reported at the line that set the value -------------------------


def test_task_validation_errors_point_at_the_key_that_set_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "app.yaml",
        """
        tasks:
          export:
            max_retries: -1
            cron: "61 * * * *"
            priority: urgent
        """,
    )
    config = merge([load_config(path)])
    with pytest.raises(ConfigFileErrors) as info:
        config.apply(export())

    found = {(p.line, p.key) for p in info.value.problems}
    assert found == {
        (3, "tasks.export.max_retries"),
        (4, "tasks.export.cron"),
        (5, "tasks.export.priority"),
    }
    by_key = {p.key: str(p) for p in info.value.problems}
    assert by_key["tasks.export.max_retries"].startswith(f"{path}:3:18: tasks.export.max_retries:")
    assert "must be an integer >= 0; got -1" in by_key["tasks.export.max_retries"]
    assert "invalid cron expression '61 * * * *'" in by_key["tasks.export.cron"]
    assert "'high'" in by_key["tasks.export.priority"]  # the accepted spellings are listed
    assert isinstance(info.value.__cause__, ConfigError)  # the Task's own error is chained


def test_a_bad_time_zone_is_reported_at_the_timezone_key(tmp_path: Path) -> None:
    text = "tasks:\n  export:\n    cron: '@daily'\n    timezone: Mars/Olympus\n"
    with pytest.raises(ConfigFileError) as info:
        merge([load(tmp_path, text)]).apply(export())
    assert (info.value.line, info.value.key) == (4, "tasks.export.timezone")
    assert "unknown time zone 'Mars/Olympus'" in str(info.value)
    assert not isinstance(info.value.__cause__, CronError)


def test_a_negative_interval_is_reported_at_interval_seconds(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        merge([load(tmp_path, "tasks:\n  export:\n    interval_seconds: -5\n")]).apply(export())
    assert (info.value.line, info.value.key) == (3, "tasks.export.interval_seconds")


# --- environment variables and secrets ----------------------------------------------------


def test_env_variables_are_expanded_before_validation(tmp_path: Path) -> None:
    env = {"HOST": "hooks.example.com", "RETRIES": "4", "EMPTY": ""}
    file = load(
        tmp_path,
        """
        tasks:
          export:
            max_retries: ${RETRIES}
            retry_delay_seconds: ${DELAY:-7.5}
            description: "${EMPTY:-fallback} and $${LITERAL}"
        alerts:
          - kind: webhook
            url: https://${HOST}/hook/${HOOK_PATH:-default}
        """,
        environ=env,
    )
    assert file.alerts[0].options == {"url": "https://hooks.example.com/hook/default"}
    task = merge([file]).apply(export())
    assert task is not None
    assert (task.max_retries, task.retry_delay) == (4, 7.5)  # read as numbers where numbers go
    assert task.description == "fallback and ${LITERAL}"


def test_an_unset_variable_names_itself_the_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", "alerts:\n  - kind: webhook\n    url: ${HOOK_URL}\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path, environ={})
    error = info.value
    assert (error.path, error.line, error.key) == (str(path), 3, "alerts.0.url")
    assert "'HOOK_URL' is not set" in str(error)
    assert "${HOOK_URL:-default}" in str(error)  # says how to fix it


def test_an_empty_variable_in_a_number_field_is_an_error_not_a_null(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path, "tasks:\n  export:\n    interval_seconds: ${EVERY}\n", environ={"EVERY": ""}
    )
    assert (error.line, error.key) == (3, "tasks.export.interval_seconds")
    assert "'${EVERY}' expands to an empty value" in str(error)


def test_expand_env_takes_the_environment_explicitly() -> None:
    env = {"A": "1", "B": "two"}
    assert expand_env("${A}-${B}-${C:-3}", env) == "1-two-3"
    assert expand_env("cost: $5, $${A} stays", env) == "cost: $5, ${A} stays"
    with pytest.raises(ConfigError, match="'C' is not set"):
        expand_env("${C}", env)
    with pytest.raises(ConfigError, match="malformed"):
        expand_env("${A", env)


def test_a_literal_secret_warns_without_showing_the_secret(tmp_path: Path) -> None:
    text = """
    alerts:
      - kind: email
        smtp_password: hunter2
      - kind: webhook
        secret: ${HOOK_SECRET}
    """
    with pytest.warns(SecretInConfigWarning) as record:
        file = load(tmp_path, text, environ={"HOOK_SECRET": "from-env"})
    assert len(record) == 1  # the ${...} one is fine
    message = str(record[0].message)
    assert message.startswith(f"{tmp_path / 'config.yaml'}:3: alerts.0.smtp_password ")
    assert "hunter2" not in message
    assert "${ENV_VAR}" in message
    assert file.alerts[1].options["secret"] == "from-env"


def test_a_secret_from_the_environment_does_not_warn(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(tmp_path, "alerts:\n  - kind: x\n    api_token: ${TOKEN}\n", environ={"TOKEN": "t"})


# --- errors in the file itself ------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", "tasks:\n  export:\n    cron: [0 2 * * *\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert (info.value.line, info.value.column) == (4, 1)
    assert str(info.value).startswith(f"{path}:4:1: YAML syntax error:")


def test_unknown_key_says_did_you_mean_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", "tasks:\n  export:\n    max_retries: 1\n    crn: '@daily'\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:4:5: tasks.export.crn: unknown key 'crn' (did you mean 'cron'?)"
    )


def test_unknown_top_level_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    error = problems_of(tmp_path, "tasks: {}\nschedules: {}\n")
    assert (error.line, error.column, error.key) == (2, 1, "schedules")
    assert "allowed keys: tasks, alerts" in str(error)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('max_retries: "3"', "expected a whole number; got '3' (string)"),
        ('enabled: "yes"', "expected true or false; got 'yes' (string)"),
        ("retry_delay_seconds: soon", "expected a number; got 'soon' (string)"),
        ("tags: nightly", "expected a list; got 'nightly' (string)"),
    ],
)
def test_wrong_type_names_the_key_the_expected_type_and_the_value(
    tmp_path: Path, line: str, expected: str
) -> None:
    error = problems_of(tmp_path, f"tasks:\n  export:\n    {line}\n")
    assert error.key == f"tasks.export.{line.split(':')[0]}"
    assert (error.line, error.column) == (3, line.index(":") + 7)  # at the value
    assert expected in str(error)


def test_every_problem_of_a_file_is_listed_in_file_order(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path,
        """
        tasks:
          export:
            crn: "@daily"
            max_retries: many
          fetch: nope
        alerts:
          - name: ops
        """,
    )
    found = [(p.line, p.key) for p in error.problems]
    assert found == [
        (3, "tasks.export.crn"),
        (4, "tasks.export.max_retries"),
        (5, "tasks.fetch"),
        (7, "alerts.0"),
    ]
    assert "missing required key 'kind'" in str(error.problems[-1])
    assert str(error).startswith("4 problems:\n")
    assert all(str(p) in str(error) for p in error.problems)
    assert (error.line, error.key) == (3, "tasks.export.crn")  # reads as the first


def test_duplicate_keys_and_null_values_are_errors(tmp_path: Path) -> None:
    error = problems_of(tmp_path, "tasks:\n  export:\n    max_retries: 1\n    max_retries: 2\n")
    assert (error.line, error.key) == (4, "tasks.export.max_retries")
    assert "duplicate key" in str(error)
    error = problems_of(tmp_path, "tasks:\n  export:\n    max_retries:\n")
    assert "null is not a value here" in str(error)


def test_merge_keys_may_share_settings_and_be_overridden(tmp_path: Path) -> None:
    file = load(
        tmp_path,
        """
        tasks:
          a: &defaults
            max_retries: 3
            retry_delay_seconds: 10
          b:
            <<: *defaults
            max_retries: 5
        """,
    )
    assert (file.tasks["b"].max_retries, file.tasks["b"].retry_delay_seconds) == (5, 10)


def test_unsafe_yaml_tags_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = (
        f"tasks:\n  export:\n    description: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    error = problems_of(tmp_path, text)
    assert error.line == 3 and "safe loader" in str(error)
    assert not marker.exists()


def test_an_empty_file_is_an_empty_config_and_the_top_level_must_be_a_mapping(
    tmp_path: Path,
) -> None:
    assert load(tmp_path, "# nothing configured yet\n").tasks == {}
    assert load(tmp_path, "tasks:\nalerts:\n").alerts == ()
    error = problems_of(tmp_path, "- export\n")
    assert "top level must be a mapping" in str(error)


def test_an_unreadable_file_is_a_config_file_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")


def test_positions_are_kept_for_later_errors(tmp_path: Path) -> None:
    file = load(tmp_path, "tasks:\n  export:\n    cron: '@daily'\n")
    assert file.position("tasks.export.cron") == (3, 5)
    assert file.position("tasks.export.cron", value=True) == (3, 11)
    assert file.position("tasks.nothing") is None
    config = merge([file])
    error = config.error_at("export", "cron", "fires before its upstream task")
    assert error is not None and (error.line, error.column) == (3, 11)
    assert config.error_at("export", "max_retries", "unset") is None


def test_unknown_task_names_in_config_are_reported_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", "tasks:\n  export: {}\n  exprot:\n    max_retries: 1\n")
    config = merge([load_config(path)])
    [error] = config.unknown_tasks(["export", "fetch"])
    assert (error.path, error.line, error.key) == (str(path), 3, "tasks.exprot")
    assert "no task named 'exprot' is registered (did you mean 'export'?)" in str(error)
    assert config.unknown_tasks(["export", "exprot"]) == []


# --- alert channels -------------------------------------------------------------------------


def test_alert_channels_merge_by_name_else_by_kind(tmp_path: Path) -> None:
    plugin = load(
        tmp_path,
        """
        alerts:
          - kind: email
            host: smtp.plugin.example
          - kind: webhook
            name: ops
            url: https://plugin.example/ops
          - kind: webhook
            name: billing
            url: https://plugin.example/billing
        """,
        "plugin.yaml",
    )
    app = load(
        tmp_path,
        """
        alerts:
          - kind: email
            host: smtp.app.example
          - kind: webhook
            name: ops
            url: https://app.example/ops
        """,
        "app.yaml",
    )
    config = merge([plugin, app])
    shown = [(c.kind, c.name, c.options) for c in config.alerts]
    assert shown == [
        ("email", None, {"host": "smtp.app.example"}),
        ("webhook", "ops", {"url": "https://app.example/ops"}),
        ("webhook", "billing", {"url": "https://plugin.example/billing"}),
    ]
    error = config.alert_error(1, "unreachable", option="url")
    assert (error.path, error.line, error.key) == (str(tmp_path / "app.yaml"), 6, "alerts.1.url")


def test_an_alert_channel_needs_a_kind_of_type_string(tmp_path: Path) -> None:
    error = problems_of(tmp_path, "alerts:\n  - kind: 3\n")
    assert (error.line, error.key) == (2, "alerts.0.kind")
    assert "expected a string; got 3 (integer)" in str(error)


def test_config_is_a_value() -> None:
    assert merge([]) == Config()


# --- the seed format --------------------------------------------------------------------------


def test_seed_dicts_load_unchanged() -> None:
    nightly = task_from_seed(
        {
            "name": "export",
            "function": ASYNC_JOB,
            "cron": "0 2 * * *",
            "interval_seconds": None,  # a key set to None is not given
            "async": True,
            "priority": "haute",
            "depends_on": ["fetch"],
            "max_retries": 3,
            "retry_delay_seconds": 60,
            "alert_on_failure": False,
            "timeout_seconds": 300,
        },
        origin=ORIGIN,
    )
    assert nightly == Task(
        "export",
        ASYNC_JOB,
        trigger=Cron("0 2 * * *"),
        mode="async",
        priority="high",
        depends_on=["fetch"],
        max_retries=3,
        retry_delay=60,
        alert_on_failure=False,
        timeout=300,
    )
    sync = task_from_seed(
        {"name": "fetch", "function": SYNC_JOB, "interval_seconds": 30, "async": False},
        origin=ORIGIN,
    )
    assert (sync.trigger, sync.mode, sync.priority) == (Every(seconds=30), Mode.SYNC, "normal")


def test_seed_function_may_be_a_callable() -> None:
    from tests import _sample_funcs

    task = task_from_seed({"name": "job", "function": _sample_funcs.async_job}, origin=ORIGIN)
    assert task.func is _sample_funcs.async_job and task.trigger is None


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ({"name": "x", "function": ASYNC_JOB, "interval": 60}, "interval", "did you mean"),
        (
            {"name": "x", "function": ASYNC_JOB, "interval_seconds": 60, "cron": "@daily"},
            "cron",
            "not both",
        ),
        ({"name": "x", "function": SYNC_JOB, "async": True}, "async", "'async': True contradicts"),
        ({"name": "x", "function": ASYNC_JOB, "async": "yes"}, "async", "True or False"),
        ({"name": "x", "function": ASYNC_JOB, "max_retries": "3"}, "max_retries", "integer"),
        (
            {"name": "x", "function": ASYNC_JOB, "retry_delay_seconds": -1},
            "retry_delay_seconds",
            ">= 0",
        ),
        ({"name": "x", "function": ASYNC_JOB, "cron": "61 * * * *"}, "cron", "invalid cron"),
        ({"name": "x", "function": "tests._sample_funcs:nope"}, "function", "has no attribute"),
        ({"name": "x"}, "function", "missing"),
    ],
)
def test_seed_errors_name_the_origin_and_the_key(
    entry: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        task_from_seed(entry, origin=ORIGIN)
    message = str(info.value)
    assert message.startswith(f"{ORIGIN} (task 'x'), key {key!r}: ")
    assert words in message
    assert info.value.field == key


def test_a_seed_entry_that_is_not_a_dict_names_its_origin() -> None:
    with pytest.raises(
        ConfigError, match=r"^PLUGIN_TASKS\[2\] of xcore_billing.tasks must be a dict"
    ):
        task_from_seed(["export"], origin=ORIGIN)  # type: ignore[arg-type]
