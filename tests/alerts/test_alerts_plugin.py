"""The alerts add-on as an installed plugin: its real ``xtasks`` entry point, YAML ``alerts:``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import pytest

from xtasks import ConfigFileError, Scheduler
from xtasks_alerts import EmailAlerter, WebhookAlerter

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("XTASKS_PLUGINS", "XTASKS_DISABLE_PLUGIN_AUTOLOAD", "XTASKS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_the_entry_point_is_installed() -> None:
    [ep] = [ep for ep in entry_points(group="xtasks") if ep.name == "alerts"]
    assert ep.value == "xtasks_alerts._plugin"


def test_email_from_yaml_through_the_installed_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    path = write(
        tmp_path,
        """
        alerts:
          - kind: email
            host: ${SMTP_HOST}
            port: 587
            sender: xtasks@example.com
            recipients: [ops@example.com, oncall@example.com]
            username: xtasks
            password_env: SMTP_PASSWORD
            timeout: 5
            manager_url: https://app.example.com/manager
        """,
    )
    scheduler = Scheduler(plugins=True, config=path)
    [alerter] = [a for a in scheduler.alerters if isinstance(a, EmailAlerter)]
    assert (alerter.host, alerter.port, alerter.sender) == (
        "smtp.example.com",
        587,
        "xtasks@example.com",
    )
    assert alerter.recipients == ["ops@example.com", "oncall@example.com"]
    assert (alerter.username, alerter.password_env) == ("xtasks", "SMTP_PASSWORD")
    assert (alerter.starttls, alerter.use_tls, alerter.tls_verify) == (True, False, True)
    assert alerter.smtp_timeout == 5 and alerter.manager_url == "https://app.example.com/manager"


def test_webhook_from_yaml_through_the_installed_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    path = write(
        tmp_path,
        """
        alerts:
          - kind: webhook
            url: https://hooks.example.com/xtasks
            secret: ${HOOK_SECRET}
        """,
    )
    scheduler = Scheduler(plugins=True, config=path)
    assert len([a for a in scheduler.alerters if isinstance(a, WebhookAlerter)]) == 1


def test_a_typo_in_an_email_option_points_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        alerts:
          - kind: email
            hots: smtp.example.com
            port: 587
            sender: xtasks@example.com
            recipients: [ops@example.com]
        """,
    )
    with pytest.raises(ConfigFileError) as caught:
        Scheduler(plugins=True, config=path)
    error = caught.value
    assert (error.path, error.line, error.key) == (str(path), 3, "alerts.0.hots")
    assert "unknown option 'hots' for kind 'email'; did you mean 'host'?" in str(error)


def test_a_missing_email_option_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        alerts:
          - kind: email
            host: smtp.example.com
            port: 587
        """,
    )
    with pytest.raises(ConfigFileError) as caught:
        Scheduler(plugins=True, config=path)
    assert (caught.value.line, caught.value.key) == (2, "alerts.0")
    assert "needs the option(s) 'sender', 'recipients'" in str(caught.value)


def test_an_invalid_email_value_is_reported_with_its_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        alerts:
          - kind: email
            host: smtp.example.com
            port: 25
            sender: xtasks@example.com
            recipients: [ops@example.com]
            starttls: false
            username: xtasks
            password_env: SMTP_PASSWORD
        """,
    )
    with pytest.raises(ConfigFileError, match="refusing to send credentials in clear") as caught:
        Scheduler(plugins=True, config=path)
    assert (caught.value.path, caught.value.line) == (str(path), 2)


def test_the_plugin_imports_and_registers_without_aiosmtplib_or_httpx() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aiosmtplib"] = None
        sys.modules["httpx"] = None
        import xtasks_alerts._plugin
        from xtasks import Scheduler

        kinds = []
        xtasks_alerts._plugin.xtasks_add_alerters(lambda kind, factory: kinds.append(kind))
        print(sorted(kinds))
        Scheduler(plugins=True)  # loads the entry point: no library needed until used
        try:
            xtasks_alerts._plugin.email(
                host="h", port=25, sender="a@example.com", recipients=["b@example.com"],
                starttls=False,
            )
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "['email', 'webhook']"
    assert "pip install xtasks-alerts" in lines[1]
