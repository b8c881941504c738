"""WebhookAlerter against real local servers: a uvicorn receiver (plain and TLS) that checks
the Standard Webhooks signature with its own implementation, and a sink that never answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trustme
import uvicorn

from xtasks import (
    ErrorInfo,
    Every,
    RunCause,
    RunRecord,
    RunStatus,
    Scheduler,
    ShortIntervalWarning,
    Task,
)
from xtasks.events import Alert, AlertKind, RunChanged
from xtasks_alerts._addresses import PrivateAddressError
from xtasks_alerts._webhook import WebhookAlerter, WebhookError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from xtasks.events import Event

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(b"k" * 24 + b"\x00\xff\x10").decode()
TOKEN = "T0KEN-in-the-path"
WAIT = 10.0  # seconds any wait may take before the test fails


# --- the receiver ----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class Receiver:
    """An ASGI app that records every request and answers from a script (then 204)."""

    def __init__(self, *responses: tuple[int, dict[str, str]]) -> None:
        self.responses = list(responses)
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, extra = self.responses.pop(0) if self.responses else (204, {})
        with self._changed:
            self.deliveries.append(Delivery(scope["path"], headers, body))
            self._changed.notify_all()
        raw = [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"ok"})

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        """Block (in a worker thread) until ``count`` deliveries arrived; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.deliveries) >= count, timeout)


@contextmanager
def serve(app: Any, **ssl_options: Any) -> Iterator[int]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yield the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", **ssl_options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        thread.join(0.01)  # wait on the thread, not a bare sleep
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(WAIT)
        assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def receiver(*responses: tuple[int, dict[str, str]]) -> Iterator[tuple[Receiver, str]]:
    app = Receiver(*responses)
    with serve(app) as port:
        yield app, f"http://127.0.0.1:{port}/services/{TOKEN}?token={TOKEN}"


class HungSink:
    """A TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="hung-sink", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._changed:
                self.accepted.append(conn)
                self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.accepted) >= count, timeout)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(WAIT)
        for conn in self.accepted:
            conn.close()


@contextmanager
def hung_sink() -> Iterator[HungSink]:
    sink = HungSink()
    try:
        yield sink
    finally:
        sink.close()


# --- an independent Standard Webhooks verifier -----------------------------------------


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> None:
    """What a receiver does, written out from the spec (not calling xtasks_alerts)."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    msg_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    assert stamp.isdigit()
    assert abs(int(stamp) - time.time()) < 300, "timestamp outside the tolerance"
    signed_content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed_content, hashlib.sha256).digest())
    candidates = headers["webhook-signature"].split(" ")
    assert any(
        version == "v1" and hmac.compare_digest(signature.encode(), expected)
        for version, _, signature in (c.partition(",") for c in candidates)
    ), "no valid v1 signature"


def make_alert(kind: AlertKind = AlertKind.FAILING) -> Alert:
    at = datetime(2026, 3, 1, 2, 30, 5, 123456, tzinfo=UTC)
    failing = kind is AlertKind.FAILING
    run = RunRecord(
        id="run-42",
        task="nightly",
        status=RunStatus.FAILED if failing else RunStatus.SUCCEEDED,
        cause=RunCause.SCHEDULE,
        scheduled_at=at - timedelta(seconds=5),
        started_at=at - timedelta(seconds=4),
        finished_at=at,
        attempts=3,
        error=ErrorInfo("ConnectionError", "db down", "Traceback: secret stuff")
        if failing
        else None,
    )
    return Alert(
        kind=kind,
        task="nightly",
        run=run,
        consecutive_failures=2 if failing else 0,
        at=at,
        last_success=at - timedelta(hours=1) if failing else None,
    )


def assert_no_secrets(text: str) -> None:
    assert TOKEN not in text
    assert SECRET not in text
    assert SECRET.removeprefix("whsec_") not in text


# --- construction ------------------------------------------------------------------------


def test_repr_shows_neither_secret_nor_path_nor_credentials() -> None:
    alerter = WebhookAlerter(
        f"https://user:pw@hooks.example.com:8443/services/{TOKEN}?t={TOKEN}", secret=SECRET
    )
    assert repr(alerter) == "WebhookAlerter('https://hooks.example.com:8443/…')"
    assert str(alerter) == repr(alerter)
    assert "pw" not in repr(alerter)
    assert_no_secrets(repr(alerter))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "ws://example.com/", "example.com/x"]
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(ValueError, match="http or https"):
        WebhookAlerter(url)


@pytest.mark.parametrize("secret", ["s3cr3t", "whsec_", "whsec_not base64!", "WHSEC_c2VjcmV0"])
def test_secret_must_be_whsec_base64(secret: str) -> None:
    with pytest.raises(ValueError, match=r"'whsec_' followed by the base64") as caught:
        WebhookAlerter("https://hooks.example.com/h", secret=secret)
    if len(secret) > len("whsec_"):
        assert secret not in str(caught.value)


def test_timeout_attribute_covers_every_attempt_and_pause() -> None:
    alerter = WebhookAlerter("https://hooks.example.com/h", timeout=2, retries=3, backoff=0.5)
    assert alerter.timeout >= 2 * 4 + 0.5 + 1 + 2
    assert WebhookAlerter("https://hooks.example.com/h").timeout < 120  # 15 s x 4 + pauses
    bad: list[dict[str, Any]] = [
        {"timeout": 0},
        {"timeout": float("inf")},
        {"retries": -1},
        {"retries": 1.5},
        {"backoff": -1},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            WebhookAlerter("https://hooks.example.com/h", **kwargs)


def test_without_httpx_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=re.escape("pip install xtasks-alerts")):
        WebhookAlerter("https://hooks.example.com/h")


# --- delivery ------------------------------------------------------------------------------


async def test_signed_json_post_with_standard_webhooks_headers() -> None:
    with receiver() as (app, url):
        alerter = WebhookAlerter(url, secret=SECRET, allow_private=True, timeout=5)
        await alerter.send(make_alert(AlertKind.FAILING))
        await alerter.send(make_alert(AlertKind.RECOVERED))
    failing, recovered = app.deliveries
    for delivery in (failing, recovered):
        assert delivery.path == f"/services/{TOKEN}"
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["user-agent"].startswith("xtasks-webhook/")
        verify_signature(SECRET, delivery.headers, delivery.body)
    assert failing.headers["webhook-id"] != recovered.headers["webhook-id"]
    assert failing.json() == {
        "type": "failing",
        "task": "nightly",
        "run_id": "run-42",
        "run_status": "failed",
        "cause": "schedule",
        "scheduled_at": "2026-03-01T02:30:00.123456Z",
        "started_at": "2026-03-01T02:30:01.123456Z",
        "finished_at": "2026-03-01T02:30:05.123456Z",
        "attempts": 3,
        "error": {"type": "ConnectionError", "message": "db down"},
        "consecutive_failures": 2,
        "last_success": "2026-03-01T01:30:05.123456Z",
        "timestamp": "2026-03-01T02:30:05.123456Z",
    }
    body = recovered.json()
    assert (body["type"], body["error"], body["consecutive_failures"]) == ("recovered", None, 0)
    assert datetime.fromisoformat(body["timestamp"]) == make_alert().at


def test_a_huge_hostile_message_is_cut_in_the_payload() -> None:
    alert = make_alert()
    error = ErrorInfo("ValueError", "bad \ud800 " + "m" * 10 * 1024 * 1024, "tb")
    alert = Alert(
        kind=alert.kind,
        task=alert.task,
        run=alert.run.evolve(error=error),
        consecutive_failures=alert.consecutive_failures,
        at=alert.at,
    )
    payload = WebhookAlerter("https://hooks.example.com/x").payload(alert)
    message = payload["error"]["message"]
    assert len(message) <= 2000
    assert message.startswith("bad \\ud800 mmm") and message.endswith("characters cut]")
    json.dumps(payload, ensure_ascii=False).encode()  # what send() does: no error


async def test_without_a_secret_no_signature_headers() -> None:
    with receiver() as (app, url):
        await WebhookAlerter(url, allow_private=True).send(make_alert())
    [delivery] = app.deliveries
    assert not any(name.startswith("webhook-") for name in delivery.headers)
    assert delivery.json()["type"] == "failing"


async def test_retries_on_5xx_and_429_with_a_stable_webhook_id() -> None:
    with receiver((500, {}), (429, {}), (503, {}), (200, {})) as (app, url):
        alerter = WebhookAlerter(url, secret=SECRET, allow_private=True, retries=3, backoff=0.01)
        await alerter.send(make_alert())
    assert len(app.deliveries) == 4
    assert len({d.headers["webhook-id"] for d in app.deliveries}) == 1
    assert len({d.body for d in app.deliveries}) == 1
    for delivery in app.deliveries:
        verify_signature(SECRET, delivery.headers, delivery.body)


async def test_gives_up_after_the_retries_without_leaking_secrets() -> None:
    with receiver((500, {}), (502, {}), (500, {})) as (app, url):
        alerter = WebhookAlerter(url, secret=SECRET, allow_private=True, retries=1, backoff=0.01)
        with pytest.raises(WebhookError, match=r"failed after 2 attempt\(s\); last: status 502"):
            await alerter.send(make_alert())
    assert len(app.deliveries) == 2
    assert "Traceback: secret stuff" not in app.deliveries[0].body.decode()


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_no_retry_on_other_4xx(status: int) -> None:
    with receiver((status, {})) as (app, url):
        alerter = WebhookAlerter(url, secret=SECRET, allow_private=True, retries=3, backoff=0.01)
        with pytest.raises(WebhookError, match=f"refused the alert with {status}") as caught:
            await alerter.send(make_alert())
    assert len(app.deliveries) == 1
    assert_no_secrets("".join(traceback.format_exception(caught.value)))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(status: int) -> None:
    with receiver((status, {"location": "/elsewhere"})) as (app, url):
        alerter = WebhookAlerter(url, allow_private=True, retries=3, backoff=0.01)
        with pytest.raises(WebhookError, match="redirect"):
            await alerter.send(make_alert())
    assert [d.path for d in app.deliveries] == [f"/services/{TOKEN}"]


async def test_connection_refused_is_retried_then_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed on leaving: nothing listens there
    alerter = WebhookAlerter(
        f"http://127.0.0.1:{port}/services/{TOKEN}",
        secret=SECRET,
        allow_private=True,
        retries=1,
        backoff=0.01,
    )
    with pytest.raises(WebhookError, match=r"2 attempt\(s\); last: ConnectError") as caught:
        await alerter.send(make_alert())
    assert_no_secrets("".join(traceback.format_exception(caught.value)))


async def test_a_sink_that_never_answers_fails_at_the_timeout() -> None:
    with hung_sink() as sink:
        alerter = WebhookAlerter(
            f"http://127.0.0.1:{sink.port}/services/{TOKEN}",
            secret=SECRET,
            allow_private=True,
            timeout=0.5,
            retries=1,
            backoff=0.01,
        )
        started = time.monotonic()
        with anyio.fail_after(WAIT), pytest.raises(WebhookError) as caught:
            await alerter.send(make_alert())
        elapsed = time.monotonic() - started
        assert len(sink.accepted) == 2  # both attempts connected, neither was answered
    assert "no response within 0.5 s" in str(caught.value)
    assert elapsed >= 0.95  # two attempts, each given its 0.5 s (load only lengthens it)
    assert_no_secrets("".join(traceback.format_exception(caught.value)))


async def test_a_name_resolving_to_loopback_is_refused_at_send_time() -> None:
    with receiver() as (app, url):
        port = url.split(":")[2].split("/")[0]
        alerter = WebhookAlerter(f"http://localhost:{port}/services/{TOKEN}", retries=3)
        with pytest.raises(PrivateAddressError) as caught:
            await alerter.send(make_alert())
    assert app.deliveries == []  # refused before connecting, and not retried
    message = str(caught.value)
    assert "localhost" in message and caught.value.address in message
    assert caught.value.address in {"127.0.0.1", "::1"}
    assert "allow_private=True" in message
    assert_no_secrets(message)


# --- https, connecting to the resolved address ---------------------------------------------


@contextmanager
def tls_receiver(tmp_path: Path, *names: str) -> Iterator[tuple[Receiver, int, ssl.SSLContext]]:
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    app = Receiver()
    with serve(app, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as port:
        yield app, port, client


async def test_https_to_a_resolved_address_verifies_the_certificate_for_the_name(
    tmp_path: Path,
) -> None:
    # "localhost" is resolved once (to ::1 and/or 127.0.0.1; the server listens on the
    # latter only, so a ::1 first is also the "next address" path); the connection goes to
    # the address, with Host, SNI and certificate verification for the name.
    with tls_receiver(tmp_path, "localhost") as (app, port, client):
        alerter = WebhookAlerter(
            f"https://localhost:{port}/hook",
            secret=SECRET,
            allow_private=True,
            ssl_context=client,
            timeout=5,
            retries=0,
        )
        await alerter.send(make_alert())
    [delivery] = app.deliveries
    assert delivery.headers["host"] == f"localhost:{port}"
    verify_signature(SECRET, delivery.headers, delivery.body)


async def test_https_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    with tls_receiver(tmp_path, "other.example") as (app, port, client):
        alerter = WebhookAlerter(
            f"https://localhost:{port}/hook",
            allow_private=True,
            ssl_context=client,
            timeout=5,
            retries=0,
        )
        with pytest.raises(WebhookError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            await alerter.send(make_alert())
    assert app.deliveries == []


# --- end to end on a real scheduler ----------------------------------------------------------


async def test_scheduler_sends_one_failing_then_one_recovered() -> None:
    outcomes = iter([False, False, False, True, True])

    async def flaky() -> None:
        if not next(outcomes):
            raise RuntimeError("still down")

    with receiver() as (app, url):
        alerter = WebhookAlerter(url, secret=SECRET, allow_private=True, timeout=0.5, retries=0)
        scheduler = Scheduler(plugins=False, alerters=[alerter])
        scheduler.add(Task("flaky", flaky, alert_after=2))
        async with scheduler:
            statuses = [
                (await (await scheduler.trigger("flaky")).wait()).status.value for _ in range(5)
            ]
            assert await anyio.to_thread.run_sync(app.wait_for, 2)
        assert statuses == ["failed", "failed", "failed", "succeeded", "succeeded"]
    assert [d.json()["type"] for d in app.deliveries] == ["failing", "recovered"]
    failing, recovered = (d.json() for d in app.deliveries)
    assert failing["task"] == "flaky" and failing["consecutive_failures"] == 2
    assert failing["last_success"] is None  # it had never succeeded before the streak
    assert failing["error"] == {"type": "RuntimeError", "message": "still down"}
    assert recovered["error"] is None and recovered["run_status"] == "succeeded"
    for delivery in app.deliveries:
        verify_signature(SECRET, delivery.headers, delivery.body)


@pytest.mark.slow
async def test_a_hung_webhook_never_delays_an_every_100ms_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks: list[RunRecord] = []
    enough = anyio.Event()

    def on_event(event: Event) -> None:
        record = event.record if isinstance(event, RunChanged) else None
        if record is not None and record.task == "tick" and record.status is RunStatus.SUCCEEDED:
            ticks.append(record)
            if len(ticks) >= 20:
                enough.set()

    async def tick() -> None:
        pass

    async def broken() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, logger="xtasks")
    with hung_sink() as sink:
        alerter = WebhookAlerter(
            f"http://127.0.0.1:{sink.port}/services/{TOKEN}",
            secret=SECRET,
            allow_private=True,
            timeout=0.5,
            retries=0,
        )
        with pytest.warns(ShortIntervalWarning):
            every = Every(seconds=0.1)
        scheduler = Scheduler(plugins=False, alerters=[alerter])
        scheduler.add(Task("tick", tick, trigger=every))
        scheduler.add(Task("broken", broken, alert_after=1))
        scheduler.subscribe(on_event)
        async with scheduler:
            # a failing alert, then another task's streak: two alerts for the hung sink
            await (await scheduler.trigger("broken")).wait()
            await (await scheduler.trigger("broken")).wait()  # same streak: no new alert
            with anyio.fail_after(WAIT):
                await enough.wait()  # 2 s of ticks, while the alerter hangs
            assert await anyio.to_thread.run_sync(sink.wait_for, 1)
    fires = [r.scheduled_at for r in ticks]
    steps = {b - a for a, b in itertools.pairwise(fires)}
    assert steps == {timedelta(milliseconds=100)}, "a fire was skipped or moved off the grid"
    late = [r.started_at - r.scheduled_at for r in ticks if r.started_at is not None]
    assert len(late) == len(ticks)
    # a run held up by the alerter would start >= 0.5 s late (its timeout); allow CI jitter
    assert max(late) < timedelta(milliseconds=200), f"a run started late: {max(late)}"
    assert len(sink.accepted) == 1  # one failing alert for the streak, one connection
    failures = [r for r in caplog.records if "failed to send" in r.getMessage()]
    assert len(failures) == 1
    logged = caplog.text
    assert "no response within 0.5 s" in logged
    assert_no_secrets(logged)
