"""Issue 19: the manager page in a real headless Chromium, served by ``uvicorn --workers 3``
on one store, shows live the runs every worker executes, not only those of the worker its
event stream is on.

The page is a task's (``/manager/view/tick``): its strip of the last runs, each bar
naming the replica that ran it (``data-replica``, and "on replica ..." on hover), and its
table of runs. The browser's stream is one connection, served by one worker; ``tick``
fires every half second on whichever worker claims it first. Nothing is waited on by
sleeping: Playwright waits for the page to show what the store holds, with generous
timeouts for a loaded machine, and no bound on time is asserted.
"""

from __future__ import annotations

import time
import urllib.parse
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.manager_api.test_page_browser import LAPTOP, browser_page

from .harness import nth
from .served import STORES, TOKEN, Served, served_on

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Starting three web workers takes a loaded machine up to a few minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: Milliseconds Playwright waits for the page to show something.
WAIT_MS = 60_000
FINAL = {"succeeded", "failed", "cancelled", "skipped", "missed", "lost"}

#: Keeps, in ``window.drawn``, every run the strip has drawn and its latest status and
#: replica: the strip holds the last 100 runs, so a run drawn may have left it since.
_RECORD_DRAWN = """() => {
  window.drawn = {};
  const note = () => {
    for (const bar of document.querySelectorAll("#strip rect.bar"))
      window.drawn[bar.dataset.run] = [bar.dataset.status, bar.dataset.replica || ""];
  };
  note();
  new MutationObserver(note).observe(document.getElementById("strip"), { childList: true, subtree: true });
}"""


@pytest.fixture(
    params=STORES,
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with served_on(request.param, tmp_path_factory.mktemp("page")) as server:
        yield server


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def tick_runs(served: Served) -> dict[str, dict[str, Any]]:
    """Every stored run of ``tick``, by id, read over the HTTP API (any worker answers)."""
    answer = served.fresh("GET", "/manager/runs", params={"task": "tick", "limit": 500})
    assert answer.status_code == 200, answer.text
    runs = answer.json()["runs"]
    assert len(runs) < 500, "more runs than one read holds"
    return {run["id"]: run for run in runs}


def explain(
    page: Any,
    served: Served,
    initial: set[str],
    streams: list[str],
    expected: dict[str, dict[str, Any]] | None = None,
) -> str:
    """What the page shows against what the store holds, for a failure's message."""
    on_page: dict[str, list[str]] = page.evaluate("() => window.drawn")
    stored = tick_runs(served)
    fired = Counter(line.split()[4] for line in served.drain() if line.startswith("FIRE tick "))
    missing = {
        i: (run["status"], run["replica"], on_page.get(i))
        for i, run in stored.items()
        if i not in initial and on_page.get(i, ("",))[0] != run["status"]
    }
    return (
        f"streams on {streams}; live: {page.locator('#live').text_content()!r}; "
        f"fires by worker: {dict(fired)}; {len(initial)} runs at first, {len(on_page)} drawn; "
        f"new by worker: {Counter(r[1] for i, r in on_page.items() if i not in initial)}; "
        f"stored runs not shown as stored: {missing}"
        + (
            f"; of the {len(expected)} expected, not shown (id: stored, then shown): "
            f"{ {i: (r['status'], r['replica'], on_page.get(i)) for i, r in expected.items() if i in missing} }"
            if expected is not None
            else ""
        )
    )


def test_one_stream_shows_the_runs_of_all_three_workers_live(served: Served) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    served.wait_for(nth(2, "FIRE tick "))  # the strip has runs to start from
    with browser_page(LAPTOP) as (page, errors):
        page.set_default_timeout(WAIT_MS)
        # sign in as the form does (the session cookie is the browser's), and open no
        # page but the task's: its stream is the only one the browser opens
        signed = page.request.post(
            f"{served.base}/manager/session", form={"token": TOKEN}, max_redirects=0
        )
        assert signed.status == 303, signed.text()
        streams: list[str] = []  # the worker answering each /events request
        strip_loads: list[float] = []  # when each answer of the strip's runs came

        def answered(response: Any) -> None:
            path = path_of(response.url)
            if path == "/manager/events":
                streams.append(response.headers.get("x-worker", "?"))
            elif path == "/manager/tasks/tick" and "limit=100" in response.url:
                strip_loads.append(time.time())

        page.on("response", answered)
        page.goto(f"{served.base}/manager/view/tick")
        live = page.locator("#live")
        expect(live).to_have_text("live", timeout=WAIT_MS)
        bars = page.locator("#strip rect.bar")
        expect(bars.first).to_be_attached(timeout=WAIT_MS)
        initial = set(bars.evaluate_all("bars => bars.map(b => b.dataset.run)"))
        assert len(initial) < 100, "the strip is full: runs before the page opened left it"
        page.evaluate(_RECORD_DRAWN)
        page.evaluate("window.notReloaded = true")

        # every worker's runs reach the strip, without a reload, each naming its replica
        try:
            page.wait_for_function(
                """([pids, initial]) => {
                  const fresh = new Set();
                  for (const [run, [, replica]] of Object.entries(window.drawn))
                    if (!initial.includes(run) && replica) fresh.add(replica.split(":").pop());
                  return pids.every((pid) => fresh.has(pid));
                }""",
                arg=[served.pids, sorted(initial)],
            )
        except Exception as exc:
            raise AssertionError(explain(page, served, initial, streams)) from exc
        stored = tick_runs(served)
        new = {i: run for i, run in stored.items() if i not in initial}

        # every run stored since the page opened shows, as the store has it: those the
        # browser heard of from its one stream, whichever worker ran them
        try:
            page.wait_for_function(
                """(runs) => runs.every(([id, status]) =>
                  id in window.drawn && (status === null || window.drawn[id][0] === status))""",
                arg=[
                    [i, run["status"] if run["status"] in FINAL else None] for i, run in new.items()
                ],
            )
        except Exception as exc:
            raise AssertionError(explain(page, served, initial, streams, new)) from exc
        drawn: dict[str, list[str]] = page.evaluate("() => window.drawn")
        expect(live).to_have_text("live")
        expect(live).to_have_class("live on")
        assert page.evaluate("window.notReloaded") is True
        assert len(streams) == 1, f"the page opened {len(streams)} streams, on {streams}"
        assert len(strip_loads) == 1, f"the strip was read again: {strip_loads}"
        on_stream = streams[0]
        assert on_stream in served.pids
        others = [pid for pid in served.pids if pid != on_stream]
        for pid in others:  # ended on another worker after the strip was read: streamed
            heard = [
                i
                for i, (status, replica) in drawn.items()
                if i in new
                and (status, replica) == (stored[i]["status"], stored[i]["replica"])
                and replica.endswith(f":{pid}")
                and stored[i]["finished_at"] is not None
                and datetime.fromisoformat(stored[i]["finished_at"]).timestamp() > strip_loads[0]
            ]
            assert heard, f"no run of worker {pid} reached the stream on {on_stream}: {drawn}"

        # where each run ran, on hover: in the strip and in the table of runs
        newest = max(new)
        replica = stored[newest]["replica"]
        bar = page.locator(f'#strip rect.bar[data-run="{newest}"]')
        expect(bar).to_have_attribute("data-replica", replica)
        tooltip = page.locator(f'#strip a:has(rect[data-run="{newest}"]) > title')
        expect(tooltip).to_contain_text(f"on replica {replica}")
        row = page.locator(f'#runs tr[data-run="{newest}"]')
        expect(row).to_have_attribute("data-replica", replica)
        expect(row.locator(".status .executor")).to_have_attribute("title", f"replica {replica}")

        # the Runs view, filtered on the task: every worker's runs come in at the top
        page.goto(f"{served.base}/manager/history?task=tick")
        expect(live).to_have_text("live", timeout=WAIT_MS)
        rows = page.locator("#run-list tbody tr[data-run]")
        expect(page.locator("#runs-found")).to_contain_text("runs shown", timeout=WAIT_MS)
        listed = set(rows.evaluate_all("rows => rows.map(r => r.dataset.run)"))
        page.wait_for_function(
            """([pids, listed]) => {
              const fresh = new Set();
              for (const row of document.querySelectorAll("#run-list tbody tr[data-replica]"))
                if (!listed.includes(row.dataset.run)) fresh.add(row.dataset.replica.split(":").pop());
              return pids.every((pid) => fresh.has(pid));
            }""",
            arg=[served.pids, sorted(listed)],
        )
        first = rows.first
        replica = first.get_attribute("data-replica")
        assert replica is not None and replica.rpartition(":")[2] in served.pids
        expect(first.locator(".status .executor")).to_have_attribute("title", f"replica {replica}")
        expect(live).to_have_class("live on")
        assert not errors, errors
