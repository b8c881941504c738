"""The manager page in a real headless Chromium against a real uvicorn server: it fits a
laptop (1280×900) and a phone (390×844) with every action reachable, its charts draw the
known history, a live run reaches the strip, and the live indicator follows the stream.

The screenshots the README shows are taken here at 1280 px wide: written to
build/screenshots/, and copied to docs/ when ``XTASKS_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from xtasks import (
    AttemptRecord,
    ErrorInfo,
    Every,
    RunCause,
    RunRecord,
    RunStatus,
    Scheduler,
    Task,
)
from xtasks._run_ids import time_ordered_ids
from xtasks.stores import open_store
from xtasks_fastapi import bearer_token, end_event_streams, manager_router

from ._runs import wait_final
from .live import live_server
from .test_page import CHROMIUM, CHROMIUM_ARGS, REPO
from .test_router import TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000

#: The known history: the report ran every 10 minutes (every 7th failed), the invoices
#: sync every 2 hours (every other failed; one succeeded at its second attempt).
REPORT_RUNS = 130
SYNC_RUNS = 12


async def quick() -> str:
    return "done"


async def sync_invoices() -> None:
    raise ConnectionError("the billing API answered 503: Service Unavailable")


def _trace(kind: str, message: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "app/billing.py", line 42, in sync_invoices\n'
        "    response.raise_for_status()\n"
        f"{kind}: {message}\n"
    )


def known_history(now: datetime) -> list[RunRecord]:
    """Final runs, all scheduled within the last 24 hours, with ids as the scheduler makes
    them (time-ordered: the report's newest first, then the sync's newest first)."""
    records: list[RunRecord] = []
    for i in range(REPORT_RUNS):
        scheduled = now - timedelta(minutes=5 + 10 * i)
        started = scheduled + timedelta(milliseconds=40 + 10 * (i % 5))
        failed = i % 7 == 3
        retried = i == 1
        timeout = ErrorInfo("TimeoutError", "the warehouse query took too long")
        records.append(
            RunRecord(
                id="",
                task="nightly-report",
                status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
                cause=RunCause.SCHEDULE,
                scheduled_at=scheduled,
                started_at=started,
                finished_at=started + timedelta(seconds=2 + (i * 37 % 23)),
                attempts=2 if retried else 1,
                earlier_attempts=(
                    AttemptRecord(number=1, started_at=started, finished_at=started, error=timeout),
                )
                if retried
                else (),
                error=timeout if failed else None,
                result=None if failed else "12 rows",
                replica="web-1",
                executor="async",
            )
        )
    for i in range(SYNC_RUNS):
        scheduled = now - timedelta(hours=2 * i, minutes=20)
        started = scheduled + timedelta(seconds=1.5)
        message = "the billing API answered 503: Service Unavailable"
        retried = i == 1
        records.append(
            RunRecord(
                id="",
                task="sync-invoices",
                status=RunStatus.SUCCEEDED if i % 2 else RunStatus.FAILED,
                cause=RunCause.SCHEDULE,
                scheduled_at=scheduled,
                started_at=started,
                finished_at=started + timedelta(seconds=8 if retried else 3),
                attempts=2 if retried else 1,
                error=None
                if i % 2
                else ErrorInfo("ConnectionError", message, _trace("ConnectionError", message)),
                earlier_attempts=(
                    AttemptRecord(
                        number=1,
                        started_at=started,
                        finished_at=started + timedelta(seconds=2),
                        error=ErrorInfo(
                            "ConnectionError", message, _trace("ConnectionError", message)
                        ),
                    ),
                )
                if retried
                else (),
                replica="web-2",
                executor="async",
            )
        )
    # ids as the scheduler makes them, in the order it would: oldest first
    clock = [now]
    new_id = time_ordered_ids(lambda: int(clock[0].timestamp() * 1e9))
    ids: dict[int, str] = {}
    for index in sorted(range(len(records)), key=lambda k: records[k].scheduled_at):
        clock[0] = records[index].scheduled_at
        ids[index] = new_id()
    return [r.evolve(id=ids[k]) for k, r in enumerate(records)]


class StreamCut:
    """An ASGI wrapper that can cut the manager's event stream, as a proxy or a network
    would: ``/test/cut`` ends the open streams and answers new ones 503 until
    ``/test/restore``. It can also hold new streams back, as a slow proxy or a loaded
    server would: after ``/test/hold`` a new stream waits until ``/test/release``; or,
    after ``/test/hold-answer/{path}``, the answer to the next request of ``path`` (read
    at once, sent after ``/test/release``), or after ``/test/hold-request/{path}`` that
    request itself. ``/test/held`` answers once a stream or a request waits or that
    answer was read; ``/test/final/{run id}`` once that run ended."""

    def __init__(self, app: ASGIApp, scheduler: Scheduler) -> None:
        self.app = app
        self.scheduler = scheduler
        self.down = threading.Event()
        self.holding = False
        self.holding_answer: str | None = None
        self.holding_request: str | None = None
        self.arrived: anyio.Event | None = None
        self.released: anyio.Event | None = None

    async def _test_route(self, path: str) -> PlainTextResponse | None:
        """The answer to a ``/test/...`` request that holds streams back, if it is one."""
        if path == "/test/hold":
            self.holding, self.arrived, self.released = True, anyio.Event(), anyio.Event()
            return PlainTextResponse("holding")
        if path.startswith("/test/hold-answer/"):
            self.holding_answer = path.removeprefix("/test/hold-answer")
            self.arrived, self.released = anyio.Event(), anyio.Event()
            return PlainTextResponse("holding")
        if path.startswith("/test/hold-request/"):
            self.holding_request = path.removeprefix("/test/hold-request")
            self.arrived, self.released = anyio.Event(), anyio.Event()
            return PlainTextResponse("holding")
        if path == "/test/held" and self.arrived is not None:
            with anyio.fail_after(30):
                await self.arrived.wait()
            return PlainTextResponse("held")
        if path.startswith("/test/final/"):
            record = await wait_final(self.scheduler, path.removeprefix("/test/final/"))
            return PlainTextResponse(record.status.value)
        if path == "/test/release" and self.released is not None:
            self.holding, self.holding_answer = False, None
            self.released.set()
            return PlainTextResponse("released")
        return None

    async def _answer_late(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request as the app does, but only once released."""
        assert self.arrived is not None and self.released is not None
        self.holding_answer = None
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, keep)
        self.arrived.set()
        with anyio.fail_after(30):
            await self.released.wait()
        for message in answer:
            await send(message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/test/"):
            answer = await self._test_route(path)
            if answer is not None:
                await answer(scope, receive, send)
                return
        if scope["type"] == "http" and path.endswith("/events") and self.holding:
            assert self.arrived is not None and self.released is not None
            self.arrived.set()
            with anyio.fail_after(30):
                await self.released.wait()
        if scope["type"] == "http" and path == self.holding_request:
            assert self.arrived is not None and self.released is not None
            self.holding_request = None
            self.arrived.set()
            with anyio.fail_after(30):
                await self.released.wait()
        if scope["type"] == "http" and path == self.holding_answer:
            await self._answer_late(scope, receive, send)
            return
        if scope["type"] == "http" and path == "/test/cut":
            self.down.set()
            ended = end_event_streams(self.scheduler)  # on the server's loop, as it must be
            await PlainTextResponse(f"cut {ended}")(scope, receive, send)
            return
        if scope["type"] == "http" and path == "/test/restore":
            self.down.clear()
            await PlainTextResponse("restored")(scope, receive, send)
            return
        if scope["type"] == "http" and path.endswith("/events") and self.down.is_set():
            await PlainTextResponse("the stream is cut", status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@contextmanager
def manager_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """A scheduler on SQLite holding the known history, its manager on uvicorn; the run
    ids of the history by task, newest first."""
    url = f"sqlite:///{tmp_path / 'page.db'}"
    history = known_history(datetime.now(UTC))
    ids: dict[str, list[str]] = {}
    for record in history:
        ids.setdefault(record.task, []).append(record.id)

    async def prefill() -> None:
        store = open_store(url)
        await store.open()
        try:
            await store.save_runs(history)
        finally:
            await store.close()

    anyio.run(prefill)
    scheduler = Scheduler(url, plugins=False)
    scheduler.add(
        Task(
            "nightly-report",
            quick,
            trigger=Every(minutes=30),
            priority="high",
            description="Builds the nightly sales report from the warehouse",
        )
    )
    scheduler.add(Task("sync-invoices", sync_invoices, trigger=Every(hours=2), max_retries=0))
    scheduler.add(Task("cleanup", quick, trigger=Every(hours=1), priority="low"))
    scheduler.add(Task("send-digest", quick, depends_on="nightly-report"))
    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))
    with live_server(StreamCut(app, scheduler)) as base:
        yield base, ids


@contextmanager
def browser_page(viewport: dict[str, int]) -> Iterator[tuple[Any, list[str]]]:
    """A fresh Chromium page; the list collects script errors and CSP violations."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport, timezone_id="Europe/Paris")
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error"
                    and not msg.text.startswith("Failed to load resource")
                    and "EventSource" not in msg.text  # the stream cut on purpose
                    else None
                ),
            )
            yield page, errors
        finally:
            browser.close()


def sign_in(page: Any, base: str) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    page.goto(f"{base}/manager/")
    page.get_by_label("Manager token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#tasks")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")


# Where a button is, and whether anything clips it: the viewport, or an ancestor whose
# overflow is not visible (a scrolling table wrapper hides what sticks out of it).
_CLIPPED = """(button) => {
  const box = button.getBoundingClientRect();
  const problems = [];
  if (box.width < 1 || box.height < 1) problems.push("it has no size");
  if (box.left < 0 || box.top < 0 || box.right > innerWidth + 0.5 || box.bottom > innerHeight + 0.5)
    problems.push("outside the viewport " + innerWidth + "x" + innerHeight + ": " +
      JSON.stringify([box.left, box.top, box.right, box.bottom]));
  for (let node = button.parentElement; node && node !== document.body; node = node.parentElement) {
    const style = getComputedStyle(node);
    if (style.overflowX === "visible" && style.overflowY === "visible") continue;
    const clip = node.getBoundingClientRect();
    if (box.left < clip.left - 0.5 || box.right > clip.right + 0.5 ||
        box.top < clip.top - 0.5 || box.bottom > clip.bottom + 0.5)
      problems.push("clipped by " + node.tagName + "." + node.className);
  }
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  if (hit !== button && !button.contains(hit)) problems.push("covered by " + (hit && hit.outerHTML.slice(0, 80)));
  return problems;
}"""


def check_buttons_reachable(page: Any, scope: str) -> int:
    """Every shown action button under ``scope``: visible, unclipped, clickable."""
    buttons = page.locator(f"{scope} button[data-action]:not([hidden])")
    count: int = buttons.count()
    assert count > 0, f"no action buttons under {scope}"
    for i in range(count):
        button = buttons.nth(i)
        button.scroll_into_view_if_needed()
        label = f"{button.get_attribute('data-action')} of {button.get_attribute('data-task')}"
        problems = button.evaluate(_CLIPPED)
        assert not problems, f"{label}: {problems}"
        button.click(trial=True)  # Playwright's own checks: visible, stable, receives the click
    return count


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"


def save_screenshot(page: Any, name: str, *, full_page: bool = True, to_docs: bool = True) -> None:
    shots = REPO / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    path = shots / name
    page.mouse.move(0, 0)  # no button hovered
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000
    if to_docs and os.environ.get("XTASKS_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, REPO / "docs" / name)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop-1280x900", "phone-390x844"])
def test_page_fits_with_every_action_reachable_and_charts_of_the_history(
    tmp_path: Path, viewport: dict[str, int]
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    with manager_server(tmp_path) as (base, ids), browser_page(viewport) as (page, errors):
        sign_in(page, base)
        laptop = viewport == LAPTOP

        # the task list: nothing sideways, every button of every row reachable
        no_sideways_scroll(page)
        rows = page.locator("#tasks tbody tr[data-task]")
        expect(rows).to_have_count(4)
        assert check_buttons_reachable(page, "#tasks") == 4 * 3  # run, pause, cancel each

        # per task, its 24 hours: 24 hour slots, the known runs and failures
        report = page.locator('.day-chart[data-task="nightly-report"]')
        expect(report.locator("g.hour")).to_have_count(24)
        hours = report.locator("g.hour")
        runs = sum(int(hours.nth(i).get_attribute("data-runs")) for i in range(24))
        failed = sum(int(hours.nth(i).get_attribute("data-failed")) for i in range(24))
        assert runs == REPORT_RUNS
        assert failed == len([i for i in range(REPORT_RUNS) if i % 7 == 3])
        expect(report.locator(".day-caption")).to_have_text(
            f"{REPORT_RUNS} runs · {round(100 * failed / REPORT_RUNS)}% failed"
        )
        assert report.locator("rect.bad-bar").count() > 0
        sync = page.locator('.day-chart[data-task="sync-invoices"]')
        expect(sync.locator(".day-caption")).to_have_text(f"{SYNC_RUNS} runs · 50% failed")
        expect(page.locator('.day-chart[data-task="cleanup"] .day-caption')).to_have_text("0 runs")

        # the coming fires over 6 hours: every 30 min, every hour, every 2 hours
        timeline = page.locator("#timeline")
        expect(timeline.locator('g.fires[data-task="nightly-report"] circle')).to_have_count(12)
        expect(timeline.locator('g.fires[data-task="cleanup"] circle')).to_have_count(6)
        expect(timeline.locator('g.fires[data-task="sync-invoices"] circle')).to_have_count(3)
        expect(timeline.locator('g.fires[data-task="send-digest"]')).to_have_count(0)

        # times in the browser's zone, UTC on hover
        first_time = page.locator("#tasks td.next time").first
        assert first_time.get_attribute("title").endswith(" UTC")
        expect(page.locator(".tz-hint")).to_have_text("times in Europe/Paris (UTC on hover)")
        if laptop:
            save_screenshot(page, "manager.png")
        else:  # for people to look at; the README shows the laptop ones
            save_screenshot(page, "manager-phone.png", to_docs=False)

        # a task's page: the strip of its last 100 runs, run ids in full
        page.locator('#tasks a[href$="/view/nightly-report"]').click()
        expect(page.locator("h1")).to_have_text("nightly-report")
        expect(page.locator("#strip rect.bar")).to_have_count(100)
        newest = page.locator("#strip rect.bar").last
        assert newest.get_attribute("data-run") == ids["nightly-report"][0]
        assert page.locator('#strip rect.bar[data-status="failed"]').count() == len(
            [i for i in range(100) if i % 7 == 3]
        )
        # height is duration: the longest run's bar is the tallest
        heights = page.locator("#strip rect.bar").evaluate_all(
            "bars => bars.map(b => Number(b.getAttribute('height')))"
        )
        durations = [2 + (i * 37 % 23) for i in range(100)][::-1]
        assert heights.index(max(heights)) == durations.index(max(durations))
        shown = page.locator("#runs tbody td.run-id a.mono")
        expect(shown.first).to_have_text(ids["nightly-report"][0])
        assert len(set(shown.all_inner_texts())) == shown.count() == 25  # distinct, in full
        assert shown.first.evaluate("a => a.scrollWidth <= a.clientWidth + 1")  # not cut
        no_sideways_scroll(page)
        check_buttons_reachable(page, ".task-head")
        retried = page.locator(f'#runs tr[data-run="{ids["nightly-report"][1]}"]')
        expect(retried.locator(".attempts-list li")).to_contain_text(
            "attempt 1 TimeoutError: the warehouse query took too long"
        )
        if laptop:
            save_screenshot(page, "manager-task.png", full_page=False)

        # the invoices sync: its strip, and a run's attempts with their errors
        page.goto(f"{base}/manager/view/sync-invoices")
        expect(page.locator("#strip rect.bar")).to_have_count(SYNC_RUNS)
        retried = page.locator(f'#runs tr[data-run="{ids["sync-invoices"][1]}"]')
        expect(retried.locator(".attempts-list li")).to_have_count(1)
        expect(retried.locator(".attempts-list li")).to_contain_text(
            "attempt 1 ConnectionError: the billing API answered 503"
        )
        no_sideways_scroll(page)

        # click a bar of the strip: its run opens
        page.locator(f'#strip a:has(rect[data-run="{ids["sync-invoices"][1]}"])').click()
        expect(page.locator("h1.run-title")).to_contain_text(ids["sync-invoices"][1])
        attempts = page.locator(".attempt-list li.attempt")
        expect(attempts).to_have_count(2)
        expect(attempts.first).to_contain_text("Attempt 1")
        expect(attempts.first.locator(".emsg")).to_have_text(
            "the billing API answered 503: Service Unavailable"
        )
        expect(page.locator(".settings")).to_contain_text("web-2")  # replica
        expect(page.locator(".settings .executor")).to_have_text("async")
        expect(page.locator(".settings")).to_contain_text("1.50 s late")
        expect(page.locator("#run-timeline svg rect.run-seg")).to_have_count(1)
        no_sideways_scroll(page)

        # the runs view: only the failed runs of the sync, in a time range
        page.locator("header .nav a", has_text="Runs").click()
        form = page.locator("#run-filter")
        form.locator('select[name="task"]').select_option("sync-invoices")
        form.locator('input[name="status"][value="failed"]').check()
        form.get_by_role("button", name="Show").click()
        rows = page.locator("#run-list tbody tr")
        expect(rows).to_have_count(SYNC_RUNS // 2)
        expect(page.locator("#run-list .status .badge")).to_have_text(["failed"] * (SYNC_RUNS // 2))
        expect(page.locator("#run-list .status .executor")).to_have_text(
            ["async"] * (SYNC_RUNS // 2)
        )
        # the last 5 hours: the sync ran 20 min, 2 h 20 and 4 h 20 ago; two of those failed
        since = page.evaluate(
            "() => { const d = new Date(Date.now() - 5 * 3600e3); d.setSeconds(0, 0);"
            " const p = (n) => String(n).padStart(2, '0');"
            " return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) +"
            " 'T' + p(d.getHours()) + ':' + p(d.getMinutes()); }"
        )
        form.locator('input[name="since"]').fill(since)
        form.get_by_role("button", name="Show").click()
        expect(rows).to_have_count(2)
        no_sideways_scroll(page)
        assert not errors, errors


def test_live_run_reaches_the_strip_and_the_indicator_follows_the_stream(
    tmp_path: Path,
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    with manager_server(tmp_path) as (base, ids), browser_page(LAPTOP) as (page, errors):
        sign_in(page, base)
        page.goto(f"{base}/manager/view/nightly-report")
        expect(page.locator("#live")).to_have_text("live")
        bars = page.locator("#strip rect.bar")
        expect(bars).to_have_count(100)
        page.evaluate("window.notReloaded = true")

        # a run requested on the page appears as the strip's newest bar, without reload
        seeded_newest = bars.last.get_attribute("data-run")
        assert seeded_newest is not None
        page.locator(".task-head").get_by_role("button", name="Run").click()
        newest = bars.last
        # wait for the new bar itself: the seeded newest bar is a success too
        expect(newest).not_to_have_attribute("data-run", seeded_newest)
        expect(newest).to_have_attribute("data-status", "succeeded")
        run_id = newest.get_attribute("data-run")
        assert run_id is not None and run_id not in ids["nightly-report"]
        status = page.locator(f'#runs tr[data-run="{run_id}"] .status')
        expect(status.locator(".badge")).to_have_text("succeeded")
        expect(status.locator(".executor")).to_have_text("async")  # drawn by the script
        assert page.evaluate("window.notReloaded") is True

        # the stream is cut: the indicator turns red and says so
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/test/cut").status_code == 200
            live = page.locator("#live")
            expect(live).to_have_class("live down")
            expect(live).to_contain_text("live updates lost")
            # meanwhile a run happens: the page cannot hear of it
            accepted = client.post(
                "/manager/tasks/nightly-report/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert accepted.status_code == 202
            missed = accepted.json()["run_id"]
            expect(page.locator(f'#strip rect[data-run="{missed}"]')).to_have_count(0)
            # the stream is back: the page reconnects by itself and catches up
            assert client.post("/test/restore").status_code == 200
        expect(live).to_have_text("live")
        expect(live).to_have_class("live on")
        expect(page.locator(f'#strip rect[data-run="{missed}"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        expect(page.locator(f'#runs tr[data-run="{missed}"]')).to_have_count(1)
        assert page.evaluate("window.notReloaded") is True
        assert not errors, errors


def test_a_run_that_ends_while_the_stream_connects_shows_once_it_is_up(tmp_path: Path) -> None:
    """The page reads its runs, then opens its stream: a run that ends in between (the
    stream held up by a slow proxy or a loaded server) shows once the stream is up,
    without a reload, as on a page whose stream came first."""
    expect = pytest.importorskip("playwright.sync_api").expect
    with manager_server(tmp_path) as (base, _), browser_page(LAPTOP) as (page, errors):
        # signed in without opening a page: the page below opens the server's first stream
        signed = page.request.post(
            f"{base}/manager/session", form={"token": TOKEN}, max_redirects=0
        )
        assert signed.status == 303, signed.text()
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.post("/test/hold").status_code == 200
            page.goto(f"{base}/manager/view/nightly-report")
            bars = page.locator("#strip rect.bar")
            expect(bars).to_have_count(100)  # the runs, read
            expect(page.locator("#runs tbody tr")).to_have_count(25)
            assert client.get("/test/held").text == "held"  # the stream, not yet open
            page.evaluate("window.notReloaded = true")
            accepted = client.post(
                "/manager/tasks/nightly-report/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["run_id"]
            assert client.get(f"/test/final/{run_id}").text == "succeeded"
            expect(page.locator("#live")).not_to_have_text("live")
            assert client.post("/test/release").status_code == 200
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator(f'#strip rect[data-run="{run_id}"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        expect(page.locator(f'#runs tr[data-run="{run_id}"] .status .badge')).to_have_text(
            "succeeded"
        )
        assert page.evaluate("window.notReloaded") is True
        assert not errors, errors


def test_a_run_heard_while_the_strip_is_read_stays_on_it(tmp_path: Path) -> None:
    """The stream can bring a run before the strip's runs, read earlier, arrive (a slow
    answer): the strip keeps the run, as it will be once read again."""
    expect = pytest.importorskip("playwright.sync_api").expect
    with manager_server(tmp_path) as (base, ids), browser_page(LAPTOP) as (page, errors):
        sign_in(page, base)
        with httpx.Client(base_url=base, timeout=60) as client:
            hold = client.post("/test/hold-answer/manager/tasks/nightly-report")
            assert hold.status_code == 200
            page.goto(f"{base}/manager/view/nightly-report")
            assert client.get("/test/held").text == "held"  # the strip's runs, read
            expect(page.locator("#live")).to_have_text("live")
            page.evaluate("window.notReloaded = true")
            accepted = client.post(
                "/manager/tasks/nightly-report/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["run_id"]
            heard = page.locator(f'#strip rect[data-run="{run_id}"]')
            expect(heard).to_have_attribute("data-status", "succeeded")  # by the stream
            assert client.post("/test/release").status_code == 200
        bars = page.locator("#strip rect.bar")
        expect(bars).to_have_count(100)  # the runs read, at last
        assert bars.last.get_attribute("data-run") == run_id
        assert bars.nth(98).get_attribute("data-run") == ids["nightly-report"][0]
        expect(heard).to_have_attribute("data-status", "succeeded")
        assert page.evaluate("window.notReloaded") is True
        assert not errors, errors


def test_a_run_heard_while_the_runs_view_reads_shows_once(tmp_path: Path) -> None:
    """On the Runs view, the stream can bring a run before the list is read (a slow
    request): the run is listed once, as it ended."""
    expect = pytest.importorskip("playwright.sync_api").expect
    with manager_server(tmp_path) as (base, _), browser_page(LAPTOP) as (page, errors):
        sign_in(page, base)
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.post("/test/hold-request/manager/runs").status_code == 200
            page.goto(f"{base}/manager/history")
            assert client.get("/test/held").text == "held"  # the list's first runs, asked
            expect(page.locator("#live")).to_have_text("live")
            accepted = client.post(
                "/manager/tasks/nightly-report/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["run_id"]
            row = page.locator(f'#run-list tr[data-run="{run_id}"]')
            expect(row.locator(".status .badge")).to_have_text("succeeded")  # by the stream
            assert client.post("/test/release").status_code == 200
        found = page.locator("#runs-found")
        expect(found).to_have_text(f"{REPORT_RUNS + SYNC_RUNS + 1} runs shown")  # all of them
        expect(row).to_have_count(1)
        expect(page.locator("#run-list tbody tr").first).to_have_attribute("data-run", run_id)
        assert not errors, errors
