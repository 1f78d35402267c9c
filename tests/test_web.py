"""chronowheel.web.dashboard over ASGI (httpx, on the engine's own loop): pages, JSON API, paging, actions, safety."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape
from starlette.requests import Request

from chronowheel import Engine, Every, Retry
from chronowheel.testing import VirtualClock
from chronowheel.web import dashboard

HOSTILE = "<script>alert('x')</script>"


@dataclass
class Site:
    engine: Engine
    clock: VirtualClock
    client: httpx.AsyncClient

    async def csrf(self) -> str:
        """The token a page hands this browser (its cookie; the forms carry the same)."""
        await self.client.get("/")
        return self.client.cookies["chronowheel_csrf"]


def make_engine(tmp_path: Path, store: str) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock()
    engine = Engine(clock=clock, journal=str(tmp_path / "j.log") if store == "journal" else None)
    engine.add_pool("mail", concurrency=2)

    @engine.task(name="send", pool="mail")
    async def send(to: str) -> None:
        pass

    @engine.task(name="doomed", retry=Retry(1))
    async def doomed(why: str) -> None:
        raise ValueError(why)

    @engine.task(name="tick")
    async def tick() -> None:
        pass

    return engine, clock


async def fill(engine: Engine, clock: VirtualClock) -> None:
    """Two waiting mails (keys user:1, user:2), one dead job whose key, args and error are hostile, one series."""
    await engine.schedule("send", args=("ann",), delay=100, key="user:1")
    await engine.schedule("send", args=("bob",), delay=200, key="user:2")
    await engine.schedule("doomed", args=(HOSTILE,), delay=1, key=HOSTILE)
    await engine.schedule("tick", every=Every(60), key="ticker")
    await clock.advance(2)


@pytest.fixture(params=["memory", "journal"])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    engine, clock = make_engine(tmp_path, request.param)
    app = dashboard(engine, allow_actions=True)
    async with engine:
        await fill(engine, clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash") as client:
            yield Site(engine, clock, client)


@pytest.mark.parametrize("path", ["/", "/jobs", "/dead", "/schedules", "/jobs?state=dead", "/jobs?key=user%3A"])
async def test_pages_render_and_escape_what_users_control(site: Site, path: str) -> None:
    response = await site.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert HOSTILE not in response.text
    assert "<script>alert" not in response.text


async def test_a_job_page_shows_args_attempts_error_and_traceback(site: Site) -> None:
    (dead,) = site.engine.dead_letters()
    page = (await site.client.get(f"/jobs/{dead.id}")).text
    assert HOSTILE not in page
    assert page.count(escape(HOSTILE)) >= 2  # the key and the error
    assert escape(str([HOSTILE])) in page  # the args
    assert "ValueError" in page
    assert 'id="job-state">dead<' in page
    assert "Traceback" in page


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("", ["ticker", "user:1", "user:2", HOSTILE]),
        ("?state=dead", [HOSTILE]),
        ("?state=pending", ["ticker", "user:1", "user:2"]),
        ("?task=send", ["user:1", "user:2"]),
        ("?key=user%3A", ["user:1", "user:2"]),
        ("?key=user%3A&state=dead", []),
    ],
    ids=["all", "dead", "pending", "task", "key", "key-and-state"],
)
async def test_api_jobs_filters(site: Site, query: str, keys: list[str]) -> None:
    response = await site.client.get("/api/jobs" + query)
    assert response.status_code == 200
    assert sorted(job["key"] for job in response.json()["jobs"]) == sorted(keys)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?state=sleeping", "state must be one of"),
        ("?task=nobody", "nobody"),
        ("?after=0123", "the page cursor '0123' has expired"),
    ],
    ids=["state", "task", "cursor"],
)
async def test_bad_filters_are_400_naming_the_argument(site: Site, query: str, message: str) -> None:
    response = await site.client.get("/api/jobs" + query)
    assert response.status_code == 400
    assert message in response.json()["error"]
    page = await site.client.get("/jobs" + query)
    assert page.status_code == 400
    assert escape(message) in page.text


@pytest.mark.parametrize("store", ["memory", "journal"])
async def test_cursor_paging_sees_every_job_once(tmp_path: Path, store: str) -> None:
    engine, _ = make_engine(tmp_path, store)
    app = dashboard(engine)
    async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        for i in range(120):
            engine.schedule_nowait("send", args=(str(i),), delay=10 + i % 7, key=f"k{i}")
        seen: list[str] = []
        url: str | None = "/api/jobs"
        pages = 0
        while url is not None:
            data = (await client.get(url)).json()
            seen += [job["key"] for job in data["jobs"]]
            url = None if data["next"] is None else "/api/jobs?" + data["next"]
            pages += 1
            if pages == 1:  # a job added between pages, due before the cursor: not shown twice, none skipped
                engine.schedule_nowait("send", args=("late",), delay=1, key="early")
    assert pages == 3
    assert sorted(seen) == sorted(f"k{i}" for i in range(120))


@pytest.mark.parametrize(
    ("action", "pick", "before", "after", "listed"),
    [
        ("redrive", "dead", "dead", "pending", True),
        ("discard", "dead", "dead", "dead", False),  # a discarded dead letter is gone from every list
        ("pause", "user:1", "pending", "paused", True),
        ("cancel", "user:1", "pending", "cancelled", True),  # kept for result_ttl, as finished jobs are
    ],
)
async def test_actions_with_the_csrf_token(
    site: Site, action: str, pick: str, before: str, after: str, listed: bool
) -> None:
    engine = site.engine
    job = engine.dead_letters()[0] if pick == "dead" else engine.get(pick)
    assert job is not None
    assert job.state == before
    token = await site.csrf()
    response = await site.client.post(f"/jobs/{job.id}/{action}", data={"csrf": token, "next": "/dead"})
    assert (response.status_code, response.headers["location"]) == (303, "/dead")
    found = await site.client.get(f"/api/jobs/{job.id}")
    assert job.state == after
    assert found.status_code == (200 if listed else 404)
    if listed:
        assert found.json()["state"] == after
    assert job not in engine.dead_letters()


async def test_resume_through_the_json_api(site: Site) -> None:
    job = site.engine.get("user:2")
    assert job is not None
    token = await site.csrf()
    site.engine.pause(job)
    response = await site.client.post(f"/api/jobs/{job.id}/resume", headers={"X-CSRF-Token": token})
    assert response.json() == {"job": job.id, "resume": True}
    assert job.state == "pending"


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({}, "CSRF token is missing"),
        ({"csrf": "forged"}, "does not match"),
        ({"csrf": ""}, "CSRF token is missing"),
    ],
    ids=["no-token", "forged", "empty"],
)
async def test_posts_without_the_csrf_token_are_refused(site: Site, form: dict[str, str], reason: str) -> None:
    (dead,) = site.engine.dead_letters()
    await site.csrf()
    response = await site.client.post(f"/jobs/{dead.id}/redrive", data=form)
    assert response.status_code == 403
    assert reason in response.text
    api = await site.client.post(f"/api/jobs/{dead.id}/redrive", headers={"X-CSRF-Token": form.get("csrf", "")})
    assert api.status_code == 403
    assert site.engine.dead_letters() == [dead]


async def test_read_only_by_default(tmp_path: Path) -> None:
    engine, clock = make_engine(tmp_path, "memory")
    app = dashboard(engine)
    async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        await fill(engine, clock)
        (dead,) = engine.dead_letters()
        page = await client.get("/dead")
        assert '<form method="post"' not in page.text
        token = client.cookies["chronowheel_csrf"]
        for action in ("redrive", "discard", "pause", "resume", "cancel"):
            response = await client.post(f"/jobs/{dead.id}/{action}", data={"csrf": token})
            assert response.status_code == 403
            assert "allow_actions=True" in response.text
        assert engine.dead_letters() == [dead]


def sync_no(request: Request) -> bool:
    return request.headers.get("x-user") == "ops"


async def async_no(request: Request) -> bool:
    return request.headers.get("x-user") == "ops"


@pytest.mark.parametrize("auth", [sync_no, async_no], ids=["sync", "async"])
@pytest.mark.parametrize("path", ["/", "/api/jobs"])
async def test_the_auth_hook_decides_every_request(
    tmp_path: Path, auth: Callable[[Request], bool | Awaitable[bool]], path: str
) -> None:
    engine, _ = make_engine(tmp_path, "memory")
    app = dashboard(engine, auth=auth)
    async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        assert (await client.get(path)).status_code == 403
        assert (await client.get(path, headers={"x-user": "ops"})).status_code == 200


async def test_overview_rates_and_lateness_over_time(tmp_path: Path) -> None:
    engine, clock = make_engine(tmp_path, "memory")
    app = dashboard(engine)
    async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        await client.get("/api/overview")  # the first sample, and the sampling timer armed
        for i in range(30):
            engine.schedule_nowait("send", args=(str(i),), delay=1 + i / 10)
        await clock.advance(5)
        data: dict[str, Any] = (await client.get("/api/overview")).json()
    mail = data["pools"]["mail"]
    assert mail["concurrency"] == 2
    assert len(mail["history"]) == 1
    last = mail["last"]
    assert last["per_minute"]["succeeded"] == pytest.approx(30 / (5 / 60))
    assert last["p50"] == 0.001  # on time: the first bucket
    assert data["pools"]["default"]["last"]["p50"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"allow_actions": "yes"}, "allow_actions must be a bool, got str"), ({"auth": 3}, "auth must be a callable")],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        dashboard(Engine(), **kwargs)


@pytest.mark.parametrize(
    "back", ["//evil.example/x", "https://evil.example/", "dead", ""], ids=["//", "url", "bare", "none"]
)
async def test_an_action_only_redirects_back_into_the_dashboard(site: Site, back: str) -> None:
    job = site.engine.get("user:1")
    assert job is not None
    token = await site.csrf()
    response = await site.client.post(f"/jobs/{job.id}/pause", data={"csrf": token, "next": back})
    assert (response.status_code, response.headers["location"]) == (303, f"/jobs/{job.id}")


@pytest.mark.parametrize(
    ("action", "pick", "message"),
    [
        ("redrive", "user:1", "is not in the dead letters"),
        ("resume", "user:1", "False"),
        ("explode", "user:1", "no action 'explode'"),
    ],
    ids=["redrive-pending", "resume-not-paused", "unknown"],
)
async def test_an_action_that_does_not_apply_says_why(site: Site, action: str, pick: str, message: str) -> None:
    job = site.engine.get(pick)
    assert job is not None
    token = await site.csrf()
    response = await site.client.post(f"/api/jobs/{job.id}/{action}", headers={"X-CSRF-Token": token})
    if message == "False":  # nothing to do: the engine's own answer, not an error
        assert response.json() == {"job": job.id, action: False}
    else:
        assert response.status_code in (404, 409)
        assert message in response.json()["error"]
    assert job.state == "pending"


# -- cluster mode: the listing is the store's query --------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?state=pending", "?key=user%3A", "?task=send"])
async def test_in_cluster_mode_the_listing_is_the_whole_clusters(pg_dsn: str, query: str) -> None:
    """A client's dashboard lists the jobs a worker holds (the client's memory has none), filtered and paged
    in the database; a job's page is found there too, while actions act on the dashboard engine's own jobs."""
    from chronowheel import Cluster

    clock = VirtualClock()
    worker, client = (
        Engine(clock=clock, cluster=Cluster(pg_dsn, shards=4, lease=4.0, role=role)) for role in ("worker", "client")
    )
    for engine in (worker, client):
        engine.task(name="send")(print)
        engine.task(name="tick")(print)
    app = dashboard(client, allow_actions=True)
    async with worker, client:
        for n in range(_PAGE_OF_CLUSTER + 2):
            await worker.schedule("send", args=(n,), delay=100 + n, key=f"user:{n}")
        await worker.schedule("tick", delay=50, key="tick")
        assert client.jobs() == []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash") as http:
            seen: list[str] = []
            url: str | None = "/api/jobs" + query
            while url is not None:
                data = (await http.get(url)).json()
                seen += [job["key"] for job in data["jobs"]]
                url = None if data["next"] is None else "/api/jobs?" + data["next"]
            users = [f"user:{n}" for n in range(_PAGE_OF_CLUSTER + 2)]
            assert seen == (users if "key" in query or "task" in query else ["tick", *users])
            ticker = worker.get("tick")
            assert ticker is not None
            found = await http.get(f"/api/jobs/{ticker.id}")
            assert found.json()["key"] == "tick"
            await http.get("/")
            token = http.cookies["chronowheel_csrf"]
            refused = await http.post(f"/api/jobs/{ticker.id}/cancel", headers={"X-CSRF-Token": token})
            assert refused.status_code == 404  # not this engine's: the client holds no copy
            assert worker.get("tick") is not None


_PAGE_OF_CLUSTER = 50  # the dashboard's page: two more jobs take a second one
