"""Hostile configuration files are refused fast, each at its ``file:line:column`` with the
limit it broke: no hang, no ``MemoryError``, no raw ``RecursionError``. A literal secret,
in a key named like one or as a password inside a URL, is warned about without showing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from xtasks import _yaml_loader
from xtasks._config_file import ConfigFile, ConfigFileErrors, load_config
from xtasks._errors import SecretInConfigWarning
from xtasks._yaml_loader import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parent.parent
FAST = 5.0  # seconds: the point is "no 42 s hang", not a benchmark


def billion_laughs() -> str:
    """The classic: ten levels of nine aliases each, 10**9 strings once expanded."""
    first = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    rest = [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join([first, *rest]) + "\n"


HOSTILE = {
    # name: (text, line, column, what the message says)
    "billion_laughs": (billion_laughs(), 5, 10, f"more than {MAX_ALIAS_NODES:,} nodes"),
    "deep_flow": ("tasks: " + "[" * 5000 + "]" * 5000 + "\n", 1, 8 + MAX_DEPTH, "50 levels"),
    "deep_block": (
        "tasks:\n" + "".join(" " * (i + 1) + "-\n" for i in range(1000)),  # 500 KB
        MAX_DEPTH + 1,
        MAX_DEPTH + 1,
        "50 levels",
    ),
    "many_aliases": (
        "x: &x 1\nxs: [" + ", ".join(["*x"] * 20_000) + "]\n",
        2,
        6 + 4 * MAX_ALIAS_NODES,  # at the alias one past the budget
        f"more than {MAX_ALIAS_NODES:,} nodes",
    ),
}


def refused(path: Path) -> tuple[ConfigFileErrors, float]:
    start = time.perf_counter()
    with pytest.raises(ConfigFileErrors) as info:
        load_config(path)
    return info.value, time.perf_counter() - start


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_is_refused_fast_at_its_position(tmp_path: Path, name: str) -> None:
    text, line, column, what = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    error, elapsed = refused(path)
    assert elapsed < FAST
    assert (error.line, error.column) == (line, column)
    assert str(error).startswith(f"{path}:{line}:{column}: ")
    assert what in str(error) and "(the limit)" in str(error)


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:  # 50 MB, sparse: only the first MiB is ever read
        file.truncate(50 * 1024 * 1024)
    error, elapsed = refused(path)
    assert elapsed < FAST
    assert str(error) == (
        f"{path}: too large (52,428,800 bytes; the limit is 1,048,576 bytes = 1 MiB); "
        "is this the right file? split it if it is"
    )
    just_over = tmp_path / "just_over.yaml"
    just_over.write_bytes(b"tasks: {}\n" + b"#" * (MAX_FILE_BYTES - 10) + b"\n")
    assert "too large (1,048,577 bytes" in str(refused(just_over)[0])


def test_a_file_at_the_size_limit_and_nesting_at_the_depth_limit_load(tmp_path: Path) -> None:
    at_limit = tmp_path / "at_limit.yaml"
    at_limit.write_bytes(b"tasks: {}\n" + b"#" * (MAX_FILE_BYTES - 11) + b"\n")
    assert load_config(at_limit).tasks == {}
    deep = tmp_path / "deep.yaml"  # the top mapping, alerts' list, one channel, then lists
    nested = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    deep.write_text(f"alerts:\n  - kind: webhook\n    headers: {nested}\n", encoding="utf-8")
    assert load_config(deep).alerts[0].options["headers"] == _nested_list(MAX_DEPTH - 4)


def _nested_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def test_aliases_and_merge_keys_within_the_budget_still_work(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    tasks = "".join(f"  task_{i}:\n    <<: *defaults\n    max_retries: {i}\n" for i in range(500))
    path.write_text(
        "x-defaults: &defaults {retry_delay_seconds: 5, tags: [nightly, billing]}\n"
        f"tasks:\n{tasks}",
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileErrors) as info:  # x-defaults is not a known key...
        load_config(path)
    assert [problem.key for problem in info.value.problems] == ["x-defaults"]  # ...nothing else


def test_a_self_referencing_alias_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("tasks:\n  export:\n    tags: &t [a, *t]\n", encoding="utf-8")
    error, _ = refused(path)
    assert (error.line, error.key) == (3, "tasks.export.tags.1")
    assert "contains itself" in str(error)


def test_the_node_and_key_length_budgets_give_the_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_yaml_loader, "MAX_NODES", 1000)  # 100,000 takes seconds to reach
    path = tmp_path / "many.yaml"
    path.write_text("tasks:\n  export:\n    tags: [" + "a, " * 2000 + "]\n", encoding="utf-8")
    error, _ = refused(path)
    assert error.line == 3 and "more than 1,000 keys and values" in str(error)
    long_key = tmp_path / "long_key.yaml"
    key = "k" * 600
    long_key.write_text(f"alerts:\n  - kind: x\n    {key}:\n      {key}: 1\n", encoding="utf-8")
    error, _ = refused(long_key)
    assert (error.line, error.column) == (4, 7)
    assert "dotted path is 1,210 characters long (the limit is 1,000)" in str(error)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2024-13-45", "month must be in 1..12: not a valid timestamp"),
        ("9" * 5000, "not a valid int"),
        ("!!float soon", "not a valid float"),
    ],
)
def test_a_value_yaml_cannot_convert_is_an_error_at_its_position(
    tmp_path: Path, value: str, says: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"tasks:\n  export:\n    description: {value}\n", encoding="utf-8")
    error, _ = refused(path)
    assert (error.line, error.column, error.key) == (3, 18, "tasks.export.description")
    assert says in str(error) and "quote it" in str(error)


@pytest.mark.parametrize("name", ["billion_laughs", "deep_flow", "huge"])
def test_xtasks_check_prints_the_refusal_and_exits_1(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    if name == "huge":
        with path.open("wb") as file:
            file.truncate(50 * 1024 * 1024)
        where = f"{path}: too large"
    else:
        text, line, column, _ = HOSTILE[name]
        path.write_text(text, encoding="utf-8")
        where = f"{path}:{line}:{column}: "
    env = {k: v for k, v in os.environ.items() if not k.startswith("XTASKS_")}
    env |= {"XTASKS_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "xtasks", "check", "--store=memory://", f"--config={path}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "problem 1/1: ConfigFileError" in result.stdout
    assert where in result.stdout and "Traceback" not in result.stdout + result.stderr


# --- secrets written in the file ----------------------------------------------------------


def load_alert(tmp_path: Path, key: str, value: str, **environ: str) -> ConfigFile:
    path = tmp_path / "app.yaml"
    path.write_text(f"alerts:\n  - kind: webhook\n    {key}: {value}\n", encoding="utf-8")
    return load_config(path, environ=environ)


@pytest.mark.parametrize(
    "key",
    [
        *("private_key", "credentials", "passwd", "pwd", "authorization", "auth_token"),
        *("access_key", "client_secret", "smtp-password", "clientSecret", "X-Api-Key"),
        *("aws_secret_access_key", "apiKey", "db_pass", "PASSWORD", "signing_key"),
    ],
)
def test_a_key_named_like_a_secret_with_a_literal_value_warns(tmp_path: Path, key: str) -> None:
    with pytest.warns(SecretInConfigWarning) as record:
        load_alert(tmp_path, key, "hunter2")
    [warning] = record
    message = str(warning.message)
    assert message.startswith(f"{tmp_path / 'app.yaml'}:3: alerts.0.{key} holds a literal secret")
    assert "${ENV_VAR}" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dsn", "postgresql://billing:hunter2@db.internal:5432/billing"),
        ("url", "https://bob:hunter2@hooks.example.com/notify"),
        ("cache", "redis://:hunter2@cache:6379/0"),
        ("dsn", "'host=db user=billing password=hunter2'"),
        ("dsn", "postgresql://billing:hunter2@${DB_HOST}/billing"),  # the host is not the secret
    ],
)
def test_a_password_inside_a_url_or_dsn_warns(tmp_path: Path, key: str, value: str) -> None:
    with pytest.warns(SecretInConfigWarning) as record:
        load_alert(tmp_path, key, value, DB_HOST="db")
    [warning] = record
    message = str(warning.message)
    assert message.startswith(f"{tmp_path / 'app.yaml'}:3: alerts.0.{key} holds a password")
    assert "${ENV_VAR}" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        *[(key, "3600") for key in ("token_ttl", "max_tokens", "password_min_length")],
        *[(key, "x") for key in ("password_file", "secret_name", "access_key_id", "passage")],
        ("password", "${SMTP_PASSWORD}"),
        ("dsn", "postgresql://billing@db.internal/billing"),
        ("dsn", "postgresql://billing:${DB_PASSWORD}@db.internal/billing"),
        ("url", "https://hooks.example.com:8443/notify?to=ops@example.com"),
        ("description", "'no password here: see the vault'"),
    ],
)
def test_what_is_not_a_literal_secret_does_not_warn(tmp_path: Path, key: str, value: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_alert(tmp_path, key, value, SMTP_PASSWORD="s", DB_PASSWORD="p")


def test_an_aliased_secret_warns_once(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "alerts:\n  - &hook {kind: webhook, url: 'https://u:hunter2@h/x'}\n  - *hook\n",
        encoding="utf-8",
    )
    with pytest.warns(SecretInConfigWarning) as record:
        load_config(path)
    assert len(record) == 1
