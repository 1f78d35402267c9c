"""Durable reminders behind a small web API, for a service that runs many processes.

    pip install 'chronowheel[examples]'
    export CHRONOWHEEL_DSN=postgresql://app@localhost/app
    uvicorn examples.reminders:app --workers 2

Every web worker is a cluster worker here (``REMINDERS_ROLE=client`` makes it a client only, with the
reminders fired by separate worker processes: see docs/cluster.md). A reminder scheduled through any
process fires once, in whichever process owns its shard; if that process dies, another takes its shards
over within about ``lease`` seconds. Each firing is recorded in ``reminders_fired`` in the same transaction
as the job's fenced acknowledgement, so a reminder that is re-run after a crash is recorded once.

    curl -X POST 'localhost:8000/reminders?who=ann&text=tea&delay=30'
    curl localhost:8000/reminders/<id>
    curl -X DELETE localhost:8000/reminders/<id>
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Literal

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chronowheel import Cluster, Engine, current_job

DSN = os.environ.get("CHRONOWHEEL_DSN", "postgresql://postgres@localhost/postgres")
LEASE = float(os.environ.get("REMINDERS_LEASE", "10"))
ROLE: Literal["worker", "client"] = "client" if os.environ.get("REMINDERS_ROLE") == "client" else "worker"

engine = Engine(cluster=Cluster(DSN, lease=LEASE, role=ROLE))


@engine.task(name="remind")
async def remind(reminder: str, who: str, text: str) -> None:
    assert engine.cluster is not None
    async with engine.cluster.transaction(current_job()) as conn:  # the record and the ack commit together
        await conn.execute(
            "INSERT INTO reminders_fired (id, who, text, pid) VALUES ($1, $2, $3, $4)", reminder, who, text, os.getpid()
        )
    print(f"[pid {os.getpid()}] reminder {reminder} for {who}: {text}", flush=True)


async def create(request: Request) -> JSONResponse:
    params = request.query_params
    reminder = uuid.uuid4().hex
    job = await engine.schedule(
        "remind", args=(reminder, params["who"], params["text"]), delay=float(params["delay"]), key=reminder
    )
    return JSONResponse({"id": reminder, "due": job.deadline.isoformat(), "pid": os.getpid()}, status_code=201)


async def show(request: Request) -> JSONResponse:
    assert engine.cluster is not None
    job = await engine.cluster.get(request.path_params["id"])
    if job is None:
        return JSONResponse({"error": "no such pending reminder"}, status_code=404)
    return JSONResponse({"id": job.key, "due": job.deadline.isoformat(), "text": job.args[2]})


async def delete(request: Request) -> JSONResponse:
    assert engine.cluster is not None
    if not await engine.cluster.cancel(request.path_params["id"]):
        return JSONResponse({"error": "no such pending reminder"}, status_code=404)
    return JSONResponse({"cancelled": request.path_params["id"]})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    conn = await asyncpg.connect(DSN)
    try:
        async with conn.transaction():  # workers start together: one creates the table
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('reminders'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS reminders_fired"
                " (id text NOT NULL, who text, text text, pid int, at timestamptz DEFAULT now())"
            )
    finally:
        await conn.close()
    async with engine:
        yield


app = Starlette(
    routes=[
        Route("/reminders", create, methods=["POST"]),
        Route("/reminders/{id}", show, methods=["GET"]),
        Route("/reminders/{id}", delete, methods=["DELETE"]),
    ],
    lifespan=lifespan,
)
