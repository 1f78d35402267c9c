"""The dashboard's Starlette app: pages, the JSON API under ``/api``, actions behind CSRF and ``allow_actions``."""

from __future__ import annotations

import inspect
import json
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .._errors import ChronowheelError
from .._job import JOB_STATES, Job
from ._history import History
from ._views import job_view, overview, sparkline

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["Auth", "dashboard"]

Auth = Callable[[Request], bool | Awaitable[bool]]

_HERE: Final = Path(__file__).parent
_CSRF_COOKIE: Final = "chronowheel_csrf"
_CSRF_HEADER: Final = "x-csrf-token"
_PAGE: Final = 50
_SCAN: Final = 10_000  # engine.jobs()'s largest page: how a job is found by id
_CURSORS: Final = 1024  # the last job of the pages handed out, by id: what ?after= names
ACTIONS: Final = ("redrive", "discard", "pause", "resume", "cancel")


class _JSON(JSONResponse):
    """JSON that shows what it cannot hold (an in-memory job's arguments may be anything) by ``repr``."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=repr, allow_nan=False).encode()


class _Dashboard:
    def __init__(self, engine: Engine, allow_actions: bool, auth: Auth | None) -> None:
        self.engine = engine
        self.allow_actions = allow_actions
        self.auth = auth
        self.history = History()
        self._sampling = False
        self._cursors: OrderedDict[str, Job] = OrderedDict()
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True)
        self.templates = Jinja2Templates(env=environment)
        self.templates.env.globals["sparkline"] = sparkline

    # -- the figures over time ---------------------------------------------------------

    def _sample(self) -> None:
        """Sample now and again in ``interval`` seconds, on a volatile timer of the engine (stops with it)."""
        engine = self.engine
        self.history.sample(engine.time(), engine.stats())
        try:
            engine.call_later(self.history.interval, self._sample)
        except ChronowheelError:  # the engine stopped: no more samples
            self._sampling = False

    def sample_now(self) -> None:
        if not self._sampling:
            self._sampling = True
            self._sample()
        else:
            self.history.sample(self.engine.time(), self.engine.stats())

    # -- finding jobs ------------------------------------------------------------------

    async def jobs(
        self,
        *,
        state: str | None = None,
        task: str | None = None,
        key_prefix: str | None = None,
        limit: int,
        after: Job | None,
        here: bool = False,
    ) -> list[Job]:
        """A page of jobs: in cluster mode the whole cluster's, from the database (``here``: this engine's own)."""
        cluster = self.engine.cluster
        if cluster is not None and not here:
            return await cluster.jobs(state=state, task=task, key_prefix=key_prefix, limit=limit, after=after)
        return self.engine.jobs(state=state, task=task, key_prefix=key_prefix, limit=limit, after=after)

    async def find(self, job_id: str, *, here: bool = False) -> Job:
        after: Job | None = None
        while True:
            page = await self.jobs(limit=_SCAN, after=after, here=here)
            for job in page:
                if job.id == job_id:
                    return job
            if len(page) < _SCAN:
                raise HTTPException(404, f"no job {job_id!r} (finished jobs are kept for the engine's result_ttl)")
            after = page[-1]

    async def page(self, request: Request) -> dict[str, Any]:
        query = request.query_params
        state = query.get("state") or None
        task = query.get("task") or None
        key = query.get("key") or None
        cursor = query.get("after") or None
        after = None
        if cursor is not None:
            after = self._cursors.get(cursor)
            if after is None:
                raise HTTPException(400, f"after: the page cursor {cursor!r} has expired; start from the first page")
        try:
            jobs = await self.jobs(state=state, task=task, key_prefix=key, limit=_PAGE, after=after)
        except (ValueError, TypeError, ChronowheelError) as exc:
            raise HTTPException(400, str(exc)) from None
        more = None
        if len(jobs) == _PAGE:
            last = jobs[-1]
            self._cursors[last.id] = last
            self._cursors.move_to_end(last.id)
            while len(self._cursors) > _CURSORS:
                self._cursors.popitem(last=False)
            more = urlencode(
                {k: v for k, v in (("state", state), ("task", task), ("key", key)) if v} | {"after": last.id}
            )
        return {
            "filters": {"state": state, "task": task, "key": key},
            "jobs": [job_view(job) for job in jobs],
            "next": more,
        }

    async def schedules(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: Job | None = None
        while True:
            page = await self.jobs(limit=_SCAN, after=after)
            found += (job_view(job) for job in page if job.recurrence is not None)
            if len(page) < _SCAN:
                return found
            after = page[-1]

    # -- actions ------------------------------------------------------------------------

    async def act(self, action: str, job_id: str) -> Any:
        """An action on this engine's own copy of the job, as the sync job API acts in cluster mode."""
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}; one of {', '.join(ACTIONS)}")
        job = await self.find(job_id, here=True)
        engine = self.engine
        try:
            if action == "redrive":
                return job_view(engine.redrive(job))
            done = getattr(engine, action)(job)
        except (ValueError, TypeError, ChronowheelError, KeyError) as exc:
            raise HTTPException(409, f"{action} {job_id}: {exc}") from None
        return {"job": job_id, action: bool(done)}


def _refuse_post(dash: _Dashboard, request: Request, token: str | None) -> None:
    """Actions need ``allow_actions=True`` and the CSRF token of this browser's cookie (double submit)."""
    if not dash.allow_actions:
        raise HTTPException(403, "actions are disabled: dashboard(engine, allow_actions=True) enables them")
    cookie = request.cookies.get(_CSRF_COOKIE)
    if not cookie or not token or not secrets.compare_digest(cookie, token):
        raise HTTPException(403, "the CSRF token is missing or does not match; reload the page and try again")


def dashboard(engine: Engine, *, allow_actions: bool = False, auth: Auth | None = None) -> Starlette:
    """The engine's web dashboard, an ASGI app to mount (``Mount("/jobs", dashboard(engine))``) or serve.

    Read-only unless ``allow_actions``: then redrive, discard, pause, resume
    and cancel are POST requests carrying a CSRF token. ``auth(request)``
    (sync or async) is asked first on every request; a falsy answer is a 403.
    Everything shown is HTML-escaped; ``/api/...`` serves the same data as JSON.
    """
    if not isinstance(allow_actions, bool):
        raise TypeError(f"allow_actions must be a bool, got {type(allow_actions).__name__}")
    if auth is not None and not callable(auth):
        raise TypeError(f"auth must be a callable taking the request, got {type(auth).__name__}")
    dash = _Dashboard(engine, allow_actions, auth)

    def endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if dash.auth is not None:
                allowed = dash.auth(request)
                if inspect.isawaitable(allowed):
                    allowed = await allowed
                if not allowed:
                    raise HTTPException(403, "not allowed (the dashboard's auth hook said no)")
            return await handler(request)

        return guarded

    def page(request: Request, template: str, **context: Any) -> Response:
        token = request.cookies.get(_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response: Response = dash.templates.TemplateResponse(
            request,
            template,
            {"root": request.scope.get("root_path", ""), "actions": dash.allow_actions, "csrf": token, **context},
        )
        if request.cookies.get(_CSRF_COOKIE) != token:
            path = request.scope.get("root_path", "") or "/"
            response.set_cookie(_CSRF_COOKIE, token, path=path, httponly=True, samesite="strict")
        return response

    async def overview_page(request: Request) -> Response:
        dash.sample_now()
        return page(request, "overview.html", data=overview(engine.stats(), dash.history))

    async def jobs_page(request: Request) -> Response:
        return page(request, "jobs.html", data=await dash.page(request), states=JOB_STATES)

    async def job_page(request: Request) -> Response:
        return page(request, "job.html", job=job_view(await dash.find(request.path_params["id"])))

    async def dead_page(request: Request) -> Response:
        return page(request, "dead.html", jobs=[job_view(job) for job in engine.dead_letters()])

    async def schedules_page(request: Request) -> Response:
        return page(request, "schedules.html", jobs=await dash.schedules())

    async def action_form(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        _refuse_post(dash, request, next(iter(form.get("csrf", [])), None))
        job_id, action = request.path_params["id"], request.path_params["action"]
        await dash.act(action, job_id)
        root = request.scope.get("root_path", "")
        back = next(iter(form.get("next", [])), "")
        if not back.startswith("/") or back.startswith("//"):  # only back into this dashboard
            back = "/jobs/" + job_id
        return RedirectResponse(root + back, status_code=303)

    async def api_overview(request: Request) -> Response:
        dash.sample_now()
        return _JSON(overview(engine.stats(), dash.history))

    async def api_jobs(request: Request) -> Response:
        return _JSON(await dash.page(request))

    async def api_job(request: Request) -> Response:
        return _JSON(job_view(await dash.find(request.path_params["id"])))

    async def api_dead(request: Request) -> Response:
        return _JSON([job_view(job) for job in engine.dead_letters()])

    async def api_schedules(request: Request) -> Response:
        return _JSON(await dash.schedules())

    async def api_action(request: Request) -> Response:
        _refuse_post(dash, request, request.headers.get(_CSRF_HEADER))
        return _JSON(await dash.act(request.path_params["action"], request.path_params["id"]))

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.removeprefix(request.scope.get("root_path", "")).startswith("/api/"):
            return _JSON({"error": exc.detail}, status_code=exc.status_code)
        response: Response = dash.templates.TemplateResponse(
            request,
            "error.html",
            {
                "root": request.scope.get("root_path", ""),
                "actions": dash.allow_actions,
                "status": exc.status_code,
                "detail": exc.detail,
            },
            status_code=exc.status_code,
        )
        return response

    routes = [
        Route("/", endpoint(overview_page)),
        Route("/jobs", endpoint(jobs_page)),
        Route("/jobs/{id}", endpoint(job_page)),
        Route("/jobs/{id}/{action}", endpoint(action_form), methods=["POST"]),
        Route("/dead", endpoint(dead_page)),
        Route("/schedules", endpoint(schedules_page)),
        Route("/api/overview", endpoint(api_overview)),
        Route("/api/jobs", endpoint(api_jobs)),
        Route("/api/jobs/{id}", endpoint(api_job)),
        Route("/api/jobs/{id}/{action}", endpoint(api_action), methods=["POST"]),
        Route("/api/dead", endpoint(api_dead)),
        Route("/api/schedules", endpoint(api_schedules)),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: error})
