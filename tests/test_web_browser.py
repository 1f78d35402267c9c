"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The engine and uvicorn run on a loop of their own in a thread (the engine's
clock is virtual: the test moves it); the test drives the browser from its
own thread with Playwright's sync API. One browser for the session.
``CHRONOWHEEL_REQUIRE_BROWSER=1`` (CI) turns a missing Chromium into a
failure instead of a skip; ``CHRONOWHEEL_SCREENSHOT=FILE`` saves the
overview there (docs/dashboard.png was made so).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from chronowheel import Cron, Engine, Every, Job, Retry
from chronowheel.testing import VirtualClock
from chronowheel.web import dashboard
from helpers import virtual_sleep

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    required = os.environ.get("CHRONOWHEEL_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        (pytest.fail if required else pytest.skip)("playwright is not installed (the dev extra has it)")
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        (pytest.fail if required else pytest.skip)(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


class Server:
    """An engine with a few pools and jobs, and its dashboard served by uvicorn, on a loop in a thread."""

    def __init__(self, *, allow_actions: bool) -> None:
        self.clock = VirtualClock()
        self.engine = engine = Engine(clock=self.clock)
        engine.add_pool("mail", concurrency=2)
        engine.add_pool("reports", concurrency=1)
        self.app = dashboard(engine, allow_actions=allow_actions)
        self.loop = asyncio.new_event_loop()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.loop.run_forever, name="dashboard server", daemon=True)

        @engine.task(name="mail.send", pool="mail")
        async def send(to: str) -> None:
            await virtual_sleep(engine, 1.5)  # two workers, a mail every 0.5 s: the pool falls behind

        @engine.task(name="mail.bounce", pool="mail", retry=Retry(2, backoff=1, jitter=False))
        async def bounce(to: str) -> None:
            raise ConnectionRefusedError(f"smtp refused {to}")

        @engine.task(name="reports.daily", pool="reports")
        async def daily() -> None:
            await virtual_sleep(engine, 2)

    async def jobs(self, **filters: Any) -> list[Job]:
        return self.engine.jobs(**filters)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    async def _start(self) -> None:
        engine, clock = self.engine, self.clock
        await engine.start()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.serving = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 (uvicorn has no started event to wait on)
            await asyncio.sleep(0)  # uvicorn's start-up on this loop, not a timer
        # Through the JSON API, as a browser would: the first request arms the dashboard's sampling.
        reader, writer = await asyncio.open_connection(*self.sock.getsockname())
        writer.write(b"GET /api/overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await reader.read()
        writer.close()
        await writer.wait_closed()
        for i in range(60):
            engine.schedule_nowait("mail.send", args=(f"user{i}@example.com",), delay=1 + i * 0.5, key=f"mail:{i}")
        for who in ("ann", "bob"):
            engine.schedule_nowait("mail.bounce", args=(f"{who}@example.com",), delay=2, key=f"bounce:{who}")
        await engine.schedule("reports.daily", cron=Cron("0 9 * * 1-5", tz="Europe/Berlin"), key="daily")
        await engine.schedule("reports.daily", every=Every(3600), key="hourly")
        for _ in range(40):  # 40 s of virtual time: the mail pool falls behind, samples every 5 s
            await clock.advance(1)

    async def _stop(self) -> None:
        self.server.should_exit = True
        await self.serving
        await self.engine.stop(grace=0)

    def __enter__(self) -> Server:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server(allow_actions=True) as running:
        yield running


@pytest.fixture
def errors() -> list[str]:
    """What the page reported as errors (scripts, failed loads): none, unless a test expects and clears them."""
    return []


@pytest.fixture
def page(browser: Any, errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    yield page
    context.close()
    assert errors == []


def follow(page: Any, selector: str, url: str) -> None:
    """Click a link and wait until its page has loaded: the click returns before the navigation it starts ends."""
    page.click(selector)
    page.wait_for_url(url)


def test_every_page_loads(server: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server.url + "/")
    assert page.title() == "Overview · chronowheel"
    assert page.locator("tr[data-pool='mail'] td").nth(1).inner_text() == "2"
    assert page.locator("tr[data-pool='mail'] polyline.p99").get_attribute("points")
    page.screenshot(path=os.environ.get("CHRONOWHEEL_SCREENSHOT", str(tmp_path / "overview.png")), full_page=True)
    follow(page, "#nav-jobs", "**/jobs")
    assert page.title() == "Jobs · chronowheel"
    everything = server.call(server.jobs(limit=1000))  # mails done, running and waiting, 2 dead, 2 series
    assert len(everything) == 64
    assert page.locator("table.jobs tbody tr").count() == 50  # the first page
    follow(page, "#next-page", "**/jobs?after=*")
    assert page.locator("table.jobs tbody tr").count() == 14
    assert page.locator("#next-page").count() == 0
    follow(page, "#nav-dead", "**/dead")
    assert page.locator("table.jobs tbody tr").count() == 2
    follow(page, "table.jobs a >> nth=0", "**/jobs/*")
    assert page.title().startswith("Job ")
    assert page.locator("#job-state").inner_text() == "dead"
    assert "ConnectionRefusedError: smtp refused" in page.locator("pre.traceback").inner_text()
    follow(page, "#nav-schedules", "**/schedules")
    rows = page.locator("table.schedules tbody tr")
    assert rows.count() == 2
    assert "Cron('0 9 * * 1-5'" in page.locator("table.schedules").inner_text()


@pytest.mark.parametrize(
    ("state", "key"),
    [("dead", ""), ("pending", "mail:5"), ("", "bounce:"), ("paused", "")],
    ids=["dead", "pending-key", "key", "none"],
)
def test_filter_the_jobs_list(server: Server, page: Any, state: str, key: str) -> None:
    rows = len(server.call(server.jobs(state=state or None, key_prefix=key or None)))
    assert rows == {"dead": 2, "paused": 0}.get(state, rows)
    page.goto(server.url + "/jobs")
    page.select_option("select[name=state]", state)
    page.fill("input[name=key]", key)
    page.click("#filters button")
    page.wait_for_url("**/jobs?*")
    body = page.locator("table.jobs tbody tr")
    if rows == 0:
        assert body.inner_text() == "no jobs"
    else:
        assert body.count() == rows
        assert all(state in text for text in body.all_inner_texts())


def test_redrive_a_dead_job_and_it_leaves_the_dead_letters(server: Server, page: Any) -> None:
    page.goto(server.url + "/dead")
    first = page.locator("table.jobs tbody tr").first
    job_id = first.get_attribute("data-job")
    first.locator("button.redrive").click()
    page.wait_for_url(server.url + "/dead")
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    assert page.locator("table.jobs tbody tr").count() == 1
    assert job_id not in [job.id for job in server.engine.dead_letters()]
    page.goto(f"{server.url}/jobs/{job_id}")
    assert page.locator("#job-state").inner_text() == "pending"


def test_a_post_without_the_csrf_token_is_refused(server: Server, page: Any, errors: list[str]) -> None:
    page.goto(server.url + "/dead")
    page.evaluate("document.querySelector('form.action input[name=csrf]').remove()")
    page.locator("button.redrive").first.click()
    assert page.locator("#error").inner_text().startswith("the CSRF token is missing")
    status = page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST'})).status",
        f"{server.url}/api/jobs/{server.engine.dead_letters()[0].id}/redrive",
    )
    assert status == 403
    assert len(server.engine.dead_letters()) == 2
    assert errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"] * 2
    errors.clear()


def test_read_only_dashboard_refuses_actions(page: Any, errors: list[str]) -> None:
    with Server(allow_actions=False) as server:
        page.goto(server.url + "/dead")
        assert page.locator("button.redrive").count() == 0
        job_id = server.engine.dead_letters()[0].id
        status = page.evaluate(
            """async ([url, token]) => (await fetch(url, {method: 'POST', headers: {'X-CSRF-Token': token}})).status""",
            [f"{server.url}/api/jobs/{job_id}/redrive", "any"],
        )
        assert status == 403
        assert len(server.engine.dead_letters()) == 2
        assert errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
        errors.clear()
