"""``engine.cluster.jobs()``: one page of the whole cluster's jobs, read from the database by keyset.

The same page as ``engine.jobs()`` gives of one engine's memory: ordered by
(deadline, id), ``after`` the last job of the previous page. The rows carry
their position, so a page's last job holds where it stood when it was read:
jobs added, moved or ended between pages never repeat or skip one that
stayed. Finished jobs come from their kept outcomes (``cw_result``) until
those expire. It is an operator's query, a scan of both tables: no index is
kept for it, so the job path's writes pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import asyncpg
import orjson

from .._job import JOB_STATES, Job
from .._journal.records import job_from_record, outcome_from_record
from .._limits import check_choice, check_int, check_name
from . import sql

__all__ = ["page"]

MAX_PAGE: Final = 10_000  # as engine.jobs(): a bigger listing is paged (the catalog sits above this layer)

# Where the row's state says more than its record's (4, 6, 7: paused waiting, while claimed, while held).
_ROW_STATES: Final = {1: "running", 3: "dead", 4: "paused", 6: "paused", 7: "paused"}


async def page(
    pool: asyncpg.Pool,
    wall: Callable[[], float],
    *,
    state: object = None,
    task: object = None,
    key_prefix: object = None,
    limit: object = 100,
    after: object = None,
) -> list[Job]:
    """At most ``limit`` jobs of the cluster matching every filter given, by (deadline, id), past ``after``."""
    if state is not None:
        check_choice("state", state, JOB_STATES)
    name = check_name("task", task, optional=True)
    prefix = check_name("key_prefix", key_prefix, optional=True)
    count = check_int("limit", limit)
    assert count is not None
    if count > MAX_PAGE:
        raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}, got {count!r}")
    start = (float("-inf"), "")
    if after is not None:
        if not isinstance(after, Job):
            kind = type(after).__name__
            raise TypeError(f"after must be a Job (the last of the previous page) or None, got {kind}")
        start = (after._due_wall, after.id)
    rows = await pool.fetch(sql.PAGE, state, name, prefix, *start, wall(), count)
    jobs = []
    for row in rows:
        record = orjson.loads(row["record"])
        if row["finished"]:
            job = outcome_from_record(record).job
        else:
            record["due"] = row["due"]
            job = job_from_record(record)
            job.state = _ROW_STATES.get(row["row_state"], job.state)  # type: ignore[assignment]
        jobs.append(job)
    return jobs
