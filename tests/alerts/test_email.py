"""EmailAlerter against a real SMTP server (aiosmtpd, in a thread, on 127.0.0.1).

Certificates are made per test with trustme: a CA, and a server certificate for
127.0.0.1 and localhost. No mock anywhere: what the tests assert is what the server saw.
Every async test runs on asyncio and on trio (aiosmtplib then runs in a worker thread).
"""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from xtasks import ErrorInfo, RunCause, RunRecord, RunStatus, Scheduler, Task
from xtasks.events import Alert, AlertKind
from xtasks_alerts import EmailAlerter
from xtasks_alerts._email import EmailAlertError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-Pa55word"
PASSWORD_ENV = "XTASKS_TEST_SMTP_PASSWORD"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# --- a real SMTP server -------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: bytes
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Sink:
    """What the server received: mails, and every AUTH attempt with whether it was on TLS."""

    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.arrived:
            self.mails.append(
                Mail(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    content,
                    on_tls(server, session),
                )
            )
            self.arrived.notify_all()
        return "250 OK"

    def authenticator(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password, on_tls(server, session)))
        # handled=False: the server answers (235 or 535) itself
        return AuthResult(success=(login, password) == ("alice", PASSWORD), handled=False)

    def wait_for(self, count: int, timeout: float = 10) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.mails) >= count, timeout)


def on_tls(server: Any, session: Session) -> bool:
    """After STARTTLS (``session.ssl``) or on an implicit-TLS listener."""
    implicit = server.transport.get_extra_info("ssl_object") is not None
    return session.ssl is not None or implicit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    sink: Sink
    port: int


@contextmanager
def smtp_server(**options: Any) -> Iterator[Server]:
    sink = Sink()
    if "authenticator" in options:
        options["authenticator"] = sink.authenticator
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=10, **options)
    controller.start()
    try:
        yield Server(sink, port)
    finally:
        controller.stop()


@dataclass
class Certs:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    return Certs(ca_file, server)


def alert(
    kind: AlertKind = AlertKind.FAILING,
    *,
    task: str = "nightly.export",
    error: ErrorInfo | None = None,
    failures: int = 3,
) -> Alert:
    status = RunStatus.FAILED if kind is AlertKind.FAILING else RunStatus.SUCCEEDED
    if error is None and kind is AlertKind.FAILING:
        error = ErrorInfo("RuntimeError", "database is down", "Traceback ...\nRuntimeError: x\n")
    run = RunRecord(
        id="run-0123",
        task=task,
        status=status,
        cause=RunCause.SCHEDULE,
        scheduled_at=T0,
        started_at=T0,
        finished_at=T0,
        attempts=2,
        error=error,
    )
    return Alert(
        kind=kind,
        task=task,
        run=run,
        consecutive_failures=failures if kind is AlertKind.FAILING else 0,
        at=T0,
        last_success=T0 - timedelta(days=1) if kind is AlertKind.FAILING else None,
    )


def plain(port: int, **options: Any) -> EmailAlerter:
    options.setdefault("timeout", 5)
    return EmailAlerter(
        "127.0.0.1", port, "xtasks@example.com", ["ops@example.com"], starttls=False, **options
    )


# --- delivery and contents ----------------------------------------------------------------


async def test_plain_delivery_of_a_failing_alert_with_text_and_html_parts() -> None:
    lines = [f'  File "job.py", line {n}, in step{n}' for n in range(1, 31)]
    tb = "Traceback (most recent call last):\n" + "\n".join(lines) + "\nValueError: <b>bad</b>\n"
    error = ErrorInfo("ValueError", '<script>alert("x")</script> & co', tb)
    with smtp_server() as server:
        alerter = plain(server.port, manager_url="https://app.example.com/manager/")
        await alerter.send(alert(error=error))
    [mail] = server.sink.mails
    assert (mail.sender, mail.recipients, mail.tls) == (
        "xtasks@example.com",
        ["ops@example.com"],
        False,
    )
    msg = mail.message
    assert msg["Subject"] == "[xtasks] task 'nightly.export' is failing (3 consecutive failures)"
    assert msg["X-Xtasks-Alert"] == "failing" and msg["Auto-Submitted"] == "auto-generated"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    text_s, html_s = text.get_content(), html.get_content()
    link = "https://app.example.com/manager/view/nightly.export"
    for expected in ("nightly.export", "ValueError", "run-0123", "3", link, "2025-03-01 12:00:00"):
        assert expected in text_s
    assert '<script>alert("x")</script> & co' in text_s
    # HTML: everything escaped, the link is a link
    assert "<script>" not in html_s and "<b>bad</b>" not in html_s
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html_s
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt;" in html_s
    assert f'<a href="{link}">' in html_s
    # the traceback's end, not its beginning
    for body in (text_s, html_s):
        assert "in step30" in body and "in step12" in body
        assert "in step11\n" not in body and "in step1\n" not in body
        assert "earlier line(s) left out" in body
    assert "Consecutive failures: 3" in " ".join(text_s.split())
    assert "Last success: 2025-02-28 12:00:00" in " ".join(text_s.split())


def test_a_huge_hostile_error_makes_a_bounded_mail() -> None:
    """A 10 MB message, one 100 KB traceback line and a lone surrogate: the mail is built,
    encodable, and carries the start of the message and the end of the traceback."""
    tb = "Traceback (most recent call last):\n" + "t" * 100_000 + "\nValueError: end\n"
    error = ErrorInfo("ValueError", "bad \ud800 " + "m" * 10 * 1024 * 1024, tb)
    alerter = EmailAlerter("localhost", 25, "xtasks@example.com", ["ops@example.com"])
    msg = alerter.message(alert(error=error))
    raw = msg.as_bytes()
    assert len(raw) < 64 * 1024
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "bad \\ud800 mmm" in body and "characters cut]" in body
    assert body.rstrip().endswith("ValueError: end")


async def test_recovered_mail_and_no_manager_link_when_no_url() -> None:
    with smtp_server() as server:
        await plain(server.port).send(alert(AlertKind.RECOVERED))
    [mail] = server.sink.mails
    msg = mail.message
    assert msg["Subject"] == "[xtasks] task 'nightly.export' recovered"
    body = msg.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert "recovered" in content and "run-0123" in content
    assert "/view/" not in content and "Traceback" not in content


async def test_a_single_failure_reads_singular() -> None:
    with smtp_server() as server:
        await plain(server.port).send(alert(failures=1))
    assert server.sink.mails[0].message["Subject"].endswith("(1 consecutive failure)")


async def test_several_recipients_each_get_it() -> None:
    with smtp_server() as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "Xtasks <xtasks@example.com>",
            ["a@example.com", "Bea <b@example.com>"],
            starttls=False,
        )
        await alerter.send(alert())
    [mail] = server.sink.mails
    assert mail.recipients == ["a@example.com", "b@example.com"]
    assert mail.message["To"] == "a@example.com, Bea <b@example.com>"


# --- TLS ----------------------------------------------------------------------------------


async def test_starttls_delivers_when_the_ca_is_trusted(certs: Certs) -> None:
    with smtp_server(tls_context=certs.server, require_starttls=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            ca_file=certs.ca_file,
            timeout=5,
        )
        await alerter.send(alert())
    [mail] = server.sink.mails
    assert mail.tls


async def test_implicit_tls_delivers(certs: Certs) -> None:
    with smtp_server(ssl_context=certs.server) as server:
        alerter = EmailAlerter(
            "localhost",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            use_tls=True,
            ca_file=str(certs.ca_file),
            timeout=5,
        )
        assert alerter.starttls is False
        await alerter.send(alert())
    assert [m.tls for m in server.sink.mails] == [True]


async def test_an_untrusted_certificate_is_refused_by_default(certs: Certs) -> None:
    with smtp_server(tls_context=certs.server, require_starttls=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1", server.port, "xtasks@example.com", ["ops@example.com"], timeout=5
        )
        with pytest.raises(EmailAlertError, match="CERTIFICATE_VERIFY_FAILED"):
            await alerter.send(alert())
    assert server.sink.mails == []


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("mail.other.example").configure_cert(server_ctx)
    with smtp_server(tls_context=server_ctx, require_starttls=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            ca_file=ca_file,
            timeout=5,
        )
        with pytest.raises(EmailAlertError, match="CERTIFICATE_VERIFY_FAILED|match"):
            await alerter.send(alert())
    assert server.sink.mails == []


async def test_verification_off_delivers_and_warns_at_construction(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_server(tls_context=certs.server, require_starttls=True) as server:
        with caplog.at_level(logging.WARNING, logger="xtasks.alerts"):
            alerter = EmailAlerter(
                "127.0.0.1",
                server.port,
                "xtasks@example.com",
                ["ops@example.com"],
                tls_verify=False,
                timeout=5,
            )
        [warning] = [r for r in caplog.records if r.name == "xtasks.alerts"]
        assert warning.levelno == logging.WARNING
        assert "verification is OFF" in warning.getMessage()
        await alerter.send(alert())
    assert [m.tls for m in server.sink.mails] == [True]


async def test_credentials_are_sent_only_after_starttls(
    certs: Certs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    caplog.set_level(logging.DEBUG)
    with smtp_server(tls_context=certs.server, authenticator=True, auth_required=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            username="alice",
            password_env=PASSWORD_ENV,
            ca_file=certs.ca_file,
            timeout=5,
        )
        await alerter.send(alert())
    assert server.sink.logins == [("alice", PASSWORD, True)]
    assert [m.tls for m in server.sink.mails] == [True]
    assert PASSWORD not in repr(alerter) and PASSWORD not in caplog.text
    assert not any(PASSWORD in str(v) for v in vars(alerter).values())


async def test_a_server_without_starttls_fails_the_send_before_any_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    # This server would accept AUTH in clear; the client must never try.
    with smtp_server(authenticator=True, auth_require_tls=False) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            username="alice",
            password_env=PASSWORD_ENV,
            timeout=5,
        )
        with pytest.raises(EmailAlertError, match="does not offer STARTTLS") as caught:
            await alerter.send(alert())
    assert server.sink.logins == [] and server.sink.mails == []
    assert PASSWORD not in str(caught.value)


async def test_starttls_without_credentials_also_refuses_a_clear_only_server() -> None:
    with smtp_server() as server:
        alerter = EmailAlerter(
            "127.0.0.1", server.port, "xtasks@example.com", ["ops@example.com"], timeout=5
        )
        with pytest.raises(EmailAlertError, match="does not offer STARTTLS"):
            await alerter.send(alert())
    assert server.sink.mails == []


async def test_a_rejected_login_fails_without_showing_the_password(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + PASSWORD)
    with smtp_server(tls_context=certs.server, authenticator=True, auth_required=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            username="alice",
            password_env=PASSWORD_ENV,
            ca_file=certs.ca_file,
            timeout=5,
        )
        with pytest.raises(EmailAlertError, match="535|[Aa]uthentication") as caught:
            await alerter.send(alert())
    assert PASSWORD not in str(caught.value)
    assert server.sink.mails == []


async def test_the_password_is_read_at_send_time_and_a_missing_variable_is_named(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with smtp_server(tls_context=certs.server, authenticator=True, auth_required=True) as server:
        alerter = EmailAlerter(
            "127.0.0.1",
            server.port,
            "xtasks@example.com",
            ["ops@example.com"],
            username="alice",
            password_env=PASSWORD_ENV,
            ca_file=certs.ca_file,
            timeout=5,
        )  # built without the variable: it is only read when sending
        with pytest.raises(EmailAlertError, match=f"environment variable {PASSWORD_ENV} "):
            await alerter.send(alert())
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        await alerter.send(alert())
    assert server.sink.logins == [("alice", PASSWORD, True)]


# --- timeouts -----------------------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts TCP connections (the kernel's backlog does) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


async def test_a_server_that_never_answers_fails_at_the_timeout() -> None:
    with silent_server() as port:
        alerter = plain(port, timeout=0.3)
        assert alerter.timeout == pytest.approx(4 * 0.3 + 1)
        # Its own timeout applies: well before aiosmtplib's default of 60 s.
        with anyio.fail_after(30):
            with pytest.raises(EmailAlertError, match="[Tt]imed out|no answer"):
                await alerter.send(alert())


# --- construction -------------------------------------------------------------------------


def test_construction_refuses_unsafe_or_invalid_options(tmp_path: Path) -> None:
    def build(**options: Any) -> EmailAlerter:
        args: dict[str, Any] = {
            "host": "smtp.example.com",
            "port": 587,
            "sender": "xtasks@example.com",
            "recipients": ["ops@example.com"],
        }
        return EmailAlerter(**{**args, **options})

    with pytest.raises(ValueError, match="exclusive"):
        build(use_tls=True, starttls=True)
    with pytest.raises(ValueError, match="in clear"):
        build(starttls=False, username="alice", password_env="SMTP_PASSWORD")
    with pytest.raises(ValueError, match="password_env is not"):
        build(username="alice")
    with pytest.raises(ValueError, match="non-empty list"):
        build(recipients=[])
    with pytest.raises(ValueError, match="non-empty list"):
        build(recipients="ops@example.com")
    with pytest.raises(ValueError, match="not an email address"):
        build(recipients=["ops@example.com", "not an address"])
    with pytest.raises(ValueError, match="line breaks"):
        build(sender="x@example.com\r\nBcc: victim@example.com")
    with pytest.raises(ValueError, match="port"):
        build(port=70000)
    with pytest.raises(ValueError, match="timeout"):
        build(timeout=0)
    with pytest.raises(ValueError, match="manager_url"):
        build(manager_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="ca_file .* is not a file"):
        build(ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="NAME of an environment variable") as caught:
        build(username="alice", password_env="hunter2 is my password")
    assert "hunter2" not in str(caught.value)
    # use_tls alone switches STARTTLS off by default
    assert build(use_tls=True, port=465).starttls is False


def test_repr_shows_where_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    alerter = EmailAlerter(
        "smtp.example.com",
        587,
        "xtasks@example.com",
        ["ops@example.com"],
        username="alice",
        password_env=PASSWORD_ENV,
    )
    assert repr(alerter) == (
        "<EmailAlerter smtp.example.com:587 starttls to=ops@example.com "
        f"user=alice, password_env={PASSWORD_ENV}>"
    )


def test_a_missing_aiosmtplib_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['aiosmtplib'] = None\n"
        "from xtasks_alerts import EmailAlerter\n"
        "try:\n"
        "    EmailAlerter('h', 25, 'a@example.com', ['b@example.com'], starttls=False)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install xtasks-alerts" in out.stdout


# --- end to end, with a scheduler ---------------------------------------------------------


async def test_a_scheduler_sends_one_failing_and_one_recovered_mail() -> None:
    # fail x3 (alert_after=2: one "failing"), succeed x2 (one "recovered"), then a new
    # streak of two failures whose "failing" mail, last in the FIFO, proves nothing else
    # was sent in between
    outcomes = iter([False, False, False, True, True, False, False])

    async def flaky() -> None:
        if not next(outcomes):
            raise RuntimeError("upstream <down>")

    with smtp_server() as server:
        alerter = plain(server.port, manager_url="http://127.0.0.1:8000/manager")
        scheduler = Scheduler(plugins=False, alerters=[alerter])
        scheduler.add(Task("flaky", flaky, alert_after=2))
        async with scheduler:
            for expected in "FFFSSFF":
                record = await (await scheduler.trigger("flaky")).wait()
                assert record.status.value == {"F": "failed", "S": "succeeded"}[expected]
            await anyio.to_thread.run_sync(server.sink.wait_for, 3)
    subjects = [m.message["Subject"] for m in server.sink.mails]
    assert subjects == [
        "[xtasks] task 'flaky' is failing (2 consecutive failures)",
        "[xtasks] task 'flaky' recovered",
        "[xtasks] task 'flaky' is failing (2 consecutive failures)",
    ]
    failing = server.sink.mails[0].message.get_body(("html",))
    assert failing is not None
    html = failing.get_content()
    assert "RuntimeError" in html and "upstream &lt;down&gt;" in html
    assert "http://127.0.0.1:8000/manager/view/flaky" in html


class Signal(logging.Handler):
    """Sets ``seen`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.records.append(record)
            self.seen.set()


async def test_a_silent_mail_server_never_delays_runs() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        pass

    signal = Signal("failed to send a failing alert for task 'broken'")
    logger = logging.getLogger("xtasks")
    logger.addHandler(signal)
    try:
        with silent_server() as port:
            alerter = plain(port, timeout=2.5)
            scheduler = Scheduler(plugins=False, alerters=[alerter])
            scheduler.add(Task("broken", broken))
            scheduler.add(Task("fine", fine))
            async with scheduler:
                assert (await (await scheduler.trigger("broken")).wait()).status.value == "failed"
                # the alert now waits on the silent server; runs go on meanwhile: all five
                # are done while the alert still waits (it has not given up yet)
                for _ in range(5):
                    record = await (await scheduler.trigger("fine")).wait()
                    assert record.status.value == "succeeded"
                assert not signal.seen.is_set()
                assert await anyio.to_thread.run_sync(signal.seen.wait, 30)
    finally:
        logger.removeHandler(signal)
    [failure] = signal.records
    assert failure.exc_info is not None
    assert "Timed out" in str(failure.exc_info[1]) or "no answer" in str(failure.exc_info[1])
