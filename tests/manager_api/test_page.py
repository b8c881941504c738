"""The manager page for people: sign-in, session cookie and CSRF header, escaping, assets,
security headers; then a real headless Chromium against a real uvicorn server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import re
import time
import urllib.parse
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException

from xtasks import Attempt, ConfigError, Every, Scheduler, Task
from xtasks.abc import Executor
from xtasks_fastapi import Principal, bearer_token, manager_router
from xtasks_fastapi._page import MAX_LOGIN_BYTES

from ._runs import wait_final
from .live import live_server
from .test_router import READ, READ_TOKEN, TOKEN, WRITE, build_app, build_scheduler, ok

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
CSRF = {"X-Xtasks-Request": "1"}
HOSTILE = "<img src=x onerror=alert(1)>"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(
    scheduler: Scheduler | None = None, *, auth: Any = "bearer", base_url: str = "http://test"
) -> AsyncIterator[tuple[httpx.AsyncClient, Scheduler]]:
    scheduler = scheduler or build_scheduler()
    app = build_app(scheduler, auth)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client, scheduler


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    """Post the login form; return the session cookie's value."""
    response = await client.post("/manager/session", data={"token": token}, headers=HTML)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/manager/"
    cookie = response.cookies["xtasks_manager"]
    assert cookie
    return cookie


def session(cookie: str) -> dict[str, str]:
    return {"Cookie": f"xtasks_manager={cookie}"}


# --- sign-in and the session cookie -----------------------------------------------------


async def test_page_without_credentials_answers_the_sign_in_form() -> None:
    async with serving() as (client, _):
        response = await client.get("/manager/", headers=HTML)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["www-authenticate"] == "Bearer"
        text = response.text
        assert '<form method="post" action="/manager/session">' in text
        assert 'type="password"' in text and 'name="token"' in text
        csp = response.headers["content-security-policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
        # the one inline style block is allowed by its hash, nothing else inline
        style = re.search(r"<style>(.*?)</style>", text, re.DOTALL)
        assert style is not None
        digest = hashlib.sha256(style.group(1).encode()).digest()
        assert f"'sha256-{base64.b64encode(digest).decode()}'" in csp
        assert "<script" not in text

        task = await client.get("/manager/view/ok", headers=HTML)
        assert task.status_code == 401 and 'name="token"' in task.text

        # API clients (no text/html in Accept) still get the JSON error
        api = await client.get("/manager/")
        assert api.status_code == 401
        assert "Bearer" in api.json()["detail"]


async def test_sign_in_sets_an_httponly_strict_cookie_derived_from_the_token() -> None:
    async with serving() as (client, _):
        response = await client.post("/manager/session", data={"token": TOKEN}, headers=HTML)
        assert response.status_code == 303
        assert response.headers["location"] == "/manager/"
        set_cookie = response.headers["set-cookie"]
        assert set_cookie.startswith("xtasks_manager=")
        assert "HttpOnly" in set_cookie
        assert "SameSite=strict" in set_cookie
        assert "Path=/manager" in set_cookie
        assert "Secure" not in set_cookie  # plain http here; see the https test
        assert f"Max-Age={12 * 3600}" in set_cookie
        value = response.cookies["xtasks_manager"]
        assert TOKEN not in set_cookie
        expires, mac = value.split(".")
        assert 12 * 3600 - 60 < int(expires) - time.time() <= 12 * 3600
        signed = b"xtasks-manager-session-v2:" + expires.encode()
        assert mac == hmac.new(TOKEN.encode(), signed, hashlib.sha256).hexdigest()

        # the client keeps the cookie: the page now opens
        page = await client.get("/manager/", headers=HTML)
        assert page.status_code == 200
        assert 'id="tasks"' in page.text


async def test_sign_in_refuses_wrong_tokens_with_the_form_and_a_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with serving() as (client, _):
            for token in ("wrong", TOKEN + "x", "", TOKEN[:-1]):
                response = await client.post(
                    "/manager/session", data={"token": token}, headers=HTML
                )
                assert response.status_code == 401, token
                assert "not valid" in response.text
                assert 'name="token"' in response.text
                assert "set-cookie" not in response.headers
            api = await client.post("/manager/session", data={"token": "wrong"})
            assert api.status_code == 401
            assert "not valid" in api.json()["detail"]
            await sign_in(client, TOKEN)
    for record in caplog.records:
        assert TOKEN not in record.getMessage() + repr(record.args)
    assert "refused a sign-in" in caplog.text


async def test_sign_in_checks_the_body_type_and_size() -> None:
    async with serving() as (client, _):
        as_json = await client.post("/manager/session", json={"token": TOKEN})
        assert as_json.status_code == 415
        assert "form" in as_json.json()["detail"]
        big = "token=" + "a" * MAX_LOGIN_BYTES
        response = await client.post(
            "/manager/session",
            content=big,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413
        many = "&".join(f"f{i}=1" for i in range(50))
        response = await client.post(
            "/manager/session",
            content=many,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413


async def test_an_expired_or_altered_session_is_refused() -> None:
    async with serving() as (client, _):
        cookie = await sign_in(client, TOKEN)
        client.cookies.clear()
        expires, mac = cookie.split(".")
        signed = b"xtasks-manager-session-v2:" + str(int(time.time()) - 1).encode()
        expired = (
            f"{int(time.time()) - 1}.{hmac.new(TOKEN.encode(), signed, hashlib.sha256).hexdigest()}"
        )
        extended = f"{int(expires) + 3600}.{mac}"  # a later expiry without a new signature
        for forged in (expired, extended, mac, f"{expires}.", "1." + mac, "x" * 80):
            response = await client.get("/manager/tasks", headers=session(forged))
            assert response.status_code == 401, forged
        assert (await client.get("/manager/tasks", headers=session(cookie))).status_code == 200


async def test_cookie_is_secure_over_https() -> None:
    async with serving(base_url="https://test") as (client, _):
        response = await client.post("/manager/session", data={"token": TOKEN})
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


async def test_cookie_reads_and_writes_only_with_the_csrf_header() -> None:
    async with serving() as (client, scheduler):
        cookie = await sign_in(client, TOKEN)
        client.cookies.clear()  # send it explicitly below
        assert (await client.get("/manager/tasks", headers=session(cookie))).status_code == 200
        assert (await client.get("/manager/view/boom", headers=session(cookie))).status_code == 200

        refused = await client.post("/manager/tasks/ok/pause", headers=session(cookie))
        assert refused.status_code == 403
        assert "X-Xtasks-Request" in refused.json()["detail"]
        refused = await client.delete("/manager/tasks/ok", headers=session(cookie))
        assert refused.status_code == 403
        assert (await client.get("/manager/tasks/ok", headers=READ)).json()["state"] == "active"

        paused = await client.post("/manager/tasks/ok/pause", headers=session(cookie) | CSRF)
        assert paused.status_code == 200
        assert paused.json()["state"] == "paused"
        run = await client.post("/manager/tasks/boom/run", headers=session(cookie) | CSRF)
        assert run.status_code == 202
        await wait_final(scheduler, run.json()["run_id"])

        # bearer-header writes do not need the CSRF header
        assert (await client.post("/manager/tasks/ok/resume", headers=WRITE)).status_code == 200

        # a forged or stale cookie is no credential; a wrong bearer header wins over a cookie
        assert (await client.get("/manager/tasks", headers=session("0" * 64))).status_code == 401
        wrong = session(cookie) | {"Authorization": "Bearer wrong"}
        assert (await client.get("/manager/tasks", headers=wrong)).status_code == 401
        # the token itself is not a valid cookie
        assert (await client.get("/manager/tasks", headers=session(TOKEN))).status_code == 401


async def test_read_token_session_reads_but_cannot_act_and_sees_no_buttons() -> None:
    async with serving() as (client, _):
        cookie = await sign_in(client, READ_TOKEN)
        client.cookies.clear()
        page = await client.get("/manager/", headers=session(cookie) | HTML)
        assert page.status_code == 200
        assert 'data-can-write="false"' in page.text
        assert "data-action=" not in page.text
        assert "read-only" in page.text
        detail = await client.get("/manager/view/ok", headers=session(cookie) | HTML)
        assert detail.status_code == 200 and "data-action=" not in detail.text
        refused = await client.post("/manager/tasks/ok/run", headers=session(cookie) | CSRF)
        assert refused.status_code == 403
        assert "read" in refused.json()["detail"]

        writer = await sign_in(client, TOKEN)
        client.cookies.clear()
        assert writer != cookie
        page = await client.get("/manager/", headers=session(writer) | HTML)
        assert 'data-action="run"' in page.text and 'data-can-write="true"' in page.text


async def test_sign_out_clears_the_cookie() -> None:
    async with serving() as (client, _):
        await sign_in(client, TOKEN)
        assert (await client.get("/manager/", headers=HTML)).status_code == 200
        out = await client.post("/manager/session/logout", headers=HTML)
        assert out.status_code == 303
        assert out.headers["location"] == "/manager/"
        set_cookie = out.headers["set-cookie"]
        assert set_cookie.startswith('xtasks_manager="";') or "Max-Age=0" in set_cookie
        assert "Path=/manager" in set_cookie
        assert (await client.get("/manager/", headers=HTML)).status_code == 401
        await sign_in(client, TOKEN)
        deleted = await client.delete("/manager/session")
        assert deleted.status_code == 204
        assert (await client.get("/manager/", headers=HTML)).status_code == 401


async def test_custom_auth_page_relies_on_the_application() -> None:
    async def who(x_user: str | None = Header(None)) -> Principal:
        if x_user is None:
            raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})
        return Principal(x_user, can_write=x_user == "admin")

    async with serving(auth=who) as (client, _):
        response = await client.get("/manager/", headers=HTML)
        assert response.status_code == 401
        assert "sign in through the application" in response.text
        assert "who are you?" in response.text
        assert 'name="token"' not in response.text
        login = await client.post("/manager/session", data={"token": TOKEN})
        assert login.status_code == 404
        viewer = await client.get("/manager/", headers=HTML | {"X-User": "viewer"})
        assert viewer.status_code == 200 and "data-action=" not in viewer.text
        assert "Sign out" not in viewer.text
        admin = await client.get("/manager/", headers=HTML | {"X-User": "admin"})
        assert 'data-action="pause"' in admin.text


# --- what the pages show ------------------------------------------------------------------


async def hostile_boom() -> None:
    raise RuntimeError(f"bad input {HOSTILE} & <script>alert(2)</script>")


def test_task_names_cannot_carry_markup() -> None:
    with pytest.raises(ConfigError, match="name"):
        Task(HOSTILE, ok)


async def test_hostile_values_show_as_text() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("hostile", hostile_boom, description=HOSTILE, tags=[HOSTILE]))
    async with serving(scheduler) as (client, _):
        run = await client.post("/manager/tasks/hostile/run", headers=WRITE)
        run_id = run.json()["run_id"]
        await wait_final(scheduler, run_id)
        for path in ("/manager/", "/manager/view/hostile", f"/manager/run/{run_id}"):
            page = await client.get(path, headers=WRITE | HTML)
            assert page.status_code == 200
            assert "<img src=x" not in page.text
            assert "<script>alert" not in page.text
        page = await client.get("/manager/view/hostile", headers=WRITE | HTML)
        assert html_escaped(HOSTILE) in page.text
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
        assert "<details><summary>traceback</summary><pre>" in page.text
        assert "RuntimeError" in page.text
        run_page = await client.get(f"/manager/run/{run_id}", headers=WRITE | HTML)
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in run_page.text
        assert "<details open><summary>traceback</summary><pre>" in run_page.text
        # so does a run id typed into the URL
        missing_run = await client.get(f"/manager/run/{quoted_hostile()}", headers=WRITE | HTML)
        assert missing_run.status_code == 404
        assert "<img src=x" not in missing_run.text
        # a task name typed into the URL comes back in the 404 page, as text
        quoted = urllib.parse.quote(HOSTILE, safe="")
        missing = await client.get(f"/manager/view/{quoted}", headers=WRITE | HTML)
        assert missing.status_code == 404
        assert "<img src=x" not in missing.text
        assert html_escaped(HOSTILE) in missing.text


class _Farm(Executor):
    """Runs on the loop, and reports the start on a worker named as a hostile one could be."""

    name = "farm"
    reports_start = True

    async def run(self, attempt: Attempt) -> Any:
        attempt.started(f"farm@host-1 {HOSTILE}")
        return await attempt.task.func(*attempt.args, **attempt.kwargs)


async def test_a_run_shows_its_executor_and_the_worker_it_ran_on() -> None:
    scheduler = Scheduler(plugins=False, executors=[_Farm()])
    scheduler.add(Task("far", ok, executor="farm"))
    scheduler.add(Task("near", ok))
    async with serving(scheduler) as (client, _):
        ids = {}
        for name in ("far", "near"):
            run = await client.post(f"/manager/tasks/{name}/run", headers=WRITE)
            ids[name] = run.json()["run_id"]
            await wait_final(scheduler, ids[name])
        worker = f"farm@host-1 {html_escaped(HOSTILE)}"
        far = (await client.get(f"/manager/run/{ids['far']}", headers=WRITE | HTML)).text
        assert (
            '<dt>Executor</dt><dd><span class="executor">farm</span> · worker '
            f'<span class="worker mono">{worker}</span></dd>'
        ) in far
        near = (await client.get(f"/manager/run/{ids['near']}", headers=WRITE | HTML)).text
        assert '<dt>Executor</dt><dd><span class="executor">async</span></dd>' in near
        # the history: the executor under the status, the replica and the worker on hover
        replica = html_escaped(scheduler.replica_id)
        history = (await client.get("/manager/view/far", headers=WRITE | HTML)).text
        assert (
            f'<div class="sub executor" title="replica {replica} · worker {worker}">farm</div>'
        ) in history
        assert f'<tr data-run="{ids["far"]}" data-replica="{replica}">' in history
        assert "<img src=x" not in far + history
        history = (await client.get("/manager/view/near", headers=WRITE | HTML)).text
        assert f'<div class="sub executor" title="replica {replica}">async</div>' in history


def quoted_hostile() -> str:
    return urllib.parse.quote(HOSTILE, safe="")


def html_escaped(text: str) -> str:
    return html.escape(text, quote=True)


async def test_task_list_shows_state_next_fire_and_last_run() -> None:
    async with serving() as (client, scheduler):
        run = await client.post("/manager/tasks/boom/run", headers=WRITE)
        await wait_final(scheduler, run.json()["run_id"])
        await client.post("/manager/tasks/child/pause", headers=WRITE)
        page = (await client.get("/manager/", headers=WRITE | HTML)).text
        rows = dict(re.findall(r'<tr data-task="([^"]+)"(.*?)</tr>', page, re.DOTALL))
        assert sorted(rows) == ["boom", "child", "ok"]
        assert '<span class="badge bad">failed</span>' in rows["boom"]
        assert re.search(r'<td class="failures num bad-text"[^>]*>1</td>', rows["boom"])
        assert "on demand" in rows["boom"]
        assert Every(hours=1).describe() in rows["ok"]
        assert "<time datetime=" in rows["ok"]  # next fire
        assert "high" in rows["ok"]
        assert "never run" in rows["ok"]
        assert "state-paused" in rows["child"]
        # buttons fit the state: a paused task offers Resume, not Run or Pause
        assert re.search(r'data-action="run"[^>]*hidden', rows["child"])
        assert not re.search(r'data-action="resume"[^>]*hidden', rows["child"])
        assert re.search(r'data-action="resume"[^>]*hidden', rows["ok"])


async def test_task_page_pages_through_history() -> None:
    async with serving() as (client, scheduler):
        ids = []
        for _ in range(3):
            run = await client.post("/manager/tasks/boom/run", headers=WRITE)
            ids.append(run.json()["run_id"])
            await wait_final(scheduler, ids[-1])
        first = (await client.get("/manager/view/boom?limit=2", headers=WRITE | HTML)).text
        shown = re.findall(r'<tr data-run="([^"]+)"', first)
        assert shown == ids[::-1][:2]
        assert "kaput: the disk is full" in first
        assert "ValueError" in first
        assert "/manager/view/boom?limit=2&amp;offset=2" in first  # older
        assert "Newer" not in first
        second = (await client.get("/manager/view/boom?limit=2&offset=2", headers=WRITE)).text
        assert re.findall(r'<tr data-run="([^"]+)"', second) == [ids[0]]
        assert "/manager/view/boom?limit=2&amp;offset=0" in second  # newer
        assert "Older" not in second
        missing = await client.get("/manager/view/nope", headers=WRITE | HTML)
        assert missing.status_code == 404
        assert "nope" in missing.text


async def test_pages_have_security_headers() -> None:
    async with serving() as (client, _):
        run = await client.post("/manager/tasks/ok/run", headers=WRITE)
        run_id = run.json()["run_id"]
        for path in ("/manager/", "/manager/view/ok", "/manager/history", f"/manager/run/{run_id}"):
            response = await client.get(path, headers=WRITE | HTML)
            assert response.status_code == 200
            csp = response.headers["content-security-policy"]
            for directive in (
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "frame-ancestors 'none'",
            ):
                assert directive in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"
            text = response.text
            assert not re.search(r"<script(?![^>]*\bsrc=)", text)  # no inline script
            assert not re.search(r"<[^>]+\son\w+=", text)  # no inline event handlers
            assert 'data-prefix="/manager"' in text


async def test_static_assets_are_served_with_types_and_only_known_files() -> None:
    async with serving() as (client, _):
        expected = {
            "manager.css": "text/css",
            "manager.js": "text/javascript",
            "icon.svg": "image/svg+xml",
        }
        for name, media in expected.items():
            response = await client.get(f"/manager/static/{name}", headers=READ)
            assert response.status_code == 200, name
            assert response.headers["content-type"].startswith(media)
            assert "max-age" in response.headers["cache-control"]
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content
        for bad in ("nope.js", "..%2F_page.py", "%2e%2e%2f_auth.py", "__init__.py", ""):
            response = await client.get(f"/manager/static/{bad}", headers=READ)
            assert response.status_code == 404, bad
        # the page links the assets it is served with, with a version to bust caches
        page = (await client.get("/manager/", headers=READ)).text
        assert re.search(r'src="/manager/static/manager\.js\?v=[0-9a-f]{12}"', page)
        assert re.search(r'href="/manager/static/manager\.css\?v=[0-9a-f]{12}"', page)
        assert (await client.get("/manager/static/manager.css")).status_code == 401


# --- a real browser -----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def nightly_report() -> str:
    return "12 rows"


async def sync_invoices() -> None:
    raise ConnectionError("the billing API answered 503: Service Unavailable")


@pytest.mark.slow
def test_browser_signs_in_runs_tasks_live_and_pauses(tmp_path: Path) -> None:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    expect = playwright_sync.expect

    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False)
    scheduler.add(
        Task(
            "nightly-report",
            nightly_report,
            trigger=Every(hours=6),
            priority="high",
            description="Builds the nightly sales report",
        )
    )
    scheduler.add(Task("sync-invoices", sync_invoices, trigger=Every(minutes=15), max_retries=0))
    scheduler.add(Task("cleanup", ok, trigger=Every(days=1), priority="low"))
    scheduler.add(Task("send-digest", ok, depends_on="nightly-report"))
    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(
        manager_router(scheduler, auth=bearer_token(TOKEN, read_tokens=[READ_TOKEN]))
    )

    with live_server(app) as base, playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # console errors other than failed loads: the sign-in page is itself a 401,
            # and the browser asks for /favicon.ico there; a CSP violation would show here
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                    else None
                ),
            )

            page.goto(f"{base}/manager/")
            token = page.get_by_label("Manager token")
            expect(token).to_be_visible()
            token.fill(TOKEN)
            page.get_by_role("button", name="Sign in").click()

            expect(page.locator("#tasks")).to_be_visible()
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            expect(page.locator("#tasks tbody tr")).to_have_count(4)

            # Run: the row's last status turns succeeded without a reload
            report = page.locator('#tasks tr[data-task="nightly-report"]')
            expect(report.locator(".last-status")).to_have_text("never run")
            report.get_by_role("button", name="Run").click()
            expect(page.locator("#flash")).to_contain_text("Run requested: nightly-report")
            expect(report.locator(".last-status")).to_have_text("succeeded", timeout=10_000)
            expect(page.locator("#flash")).to_be_visible()  # still the same page, no reload

            # Pause: the state changes and the buttons follow
            cleanup = page.locator('#tasks tr[data-task="cleanup"]')
            cleanup.get_by_role("button", name="Pause").click()
            expect(cleanup.locator(".state")).to_have_text("paused", timeout=10_000)
            expect(cleanup.get_by_role("button", name="Resume")).to_be_visible()
            expect(cleanup.get_by_role("button", name="Run")).to_be_hidden()

            # the failing task's page: run it, see its error appear live
            page.get_by_role("link", name="sync-invoices").click()
            expect(page.locator("h1")).to_have_text("sync-invoices")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            page.get_by_role("button", name="Run").click()
            first = page.locator("#runs tbody tr").first
            expect(first.locator(".status .badge")).to_have_text("failed", timeout=10_000)
            expect(first.locator(".status .executor")).to_have_text("async")
            expect(first.locator(".emsg")).to_have_text(
                "the billing API answered 503: Service Unavailable", timeout=10_000
            )
            expect(first.locator(".etype")).to_have_text("ConnectionError")
            expect(first.locator("details summary")).to_have_text("traceback", timeout=10_000)
            first.locator("details summary").click()
            expect(first.locator("details pre")).to_contain_text("ConnectionError")
            expect(page.locator(".settings .failures")).to_have_text("1", timeout=10_000)
            page.screenshot(path=str(tmp_path / "task.png"), full_page=True)

            # back on the list: what happened meanwhile is there
            page.locator(".crumbs").get_by_role("link", name="Tasks", exact=True).click()
            expect(page.locator("#tasks")).to_be_visible()
            failing = page.locator('#tasks tr[data-task="sync-invoices"]')
            expect(failing.locator(".last-status")).to_have_text("failed")
            expect(failing.locator(".failures")).to_have_text("1")
            expect(page.locator('#tasks tr[data-task="cleanup"] .state')).to_have_text("paused")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)

            # (the README's screenshots are taken at 1280 px by test_page_browser.py)
            page.screenshot(path=str(tmp_path / "manager.png"), full_page=True)
            assert (tmp_path / "manager.png").stat().st_size > 10_000
            assert not errors, errors  # no CSP violations, no script errors
        finally:
            browser.close()
