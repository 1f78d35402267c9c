"""``chronowheel jobs PATH|DSN``: a journal's or a cluster's jobs, filtered, with their errors; read-only.

It reads a journal's files as recovery would (``_inspect.inspect_journal``)
without taking the journal's lock or running anything, so it works beside a
running engine (showing what is durable so far) and on a stopped one alike;
a cluster's database it reads with ``engine.cluster.jobs()``'s ``SELECT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, Final

import orjson

from .._inspect import JournalMissing, inspect_journal, iso
from .._journal.schema import STATES

__all__ = ["configure", "list_jobs", "run"]

_DSN_SCHEMES: Final = ("postgres://", "postgresql://")


def configure(commands: Any) -> None:
    parser = commands.add_parser(
        "jobs",
        help="list a journal's or a cluster's jobs, with their errors (reads only, takes no lock)",
        description="List the jobs a journal holds (pending, failed and waiting for a retry, paused, dead, and"
        " finished ones kept for result_ttl), ordered by"
        " deadline. Exit status: 0, 1 if the journal is damaged (the jobs before the damage are listed),"
        " 2 for usage errors or no journal.",
    )
    parser.add_argument(
        "path", metavar="PATH|DSN", help="the journal, as passed to Engine(journal=...), or a cluster's DSN"
    )
    # A job record's states, and a done record's (a finished job kept for result_ttl).
    parser.add_argument("--state", choices=(*STATES, "succeeded", "cancelled"), help="only jobs in this state")
    parser.add_argument("--task", metavar="T", help="only jobs of this task (its registered name)")
    parser.add_argument("--key-prefix", metavar="K", help="only jobs whose key starts with K")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def list_jobs(
    live: dict[str, dict[str, Any]], *, state: str | None = None, task: str | None = None, key_prefix: str | None = None
) -> list[dict[str, Any]]:
    """The job records of a live set that pass the filters, by deadline, as plain values (``error``: the traceback)."""
    found = [
        record
        for record in live.values()
        if (state is None or record.get("state") == state)
        and (task is None or record.get("task") == task)
        and (key_prefix is None or str(record.get("key") or "").startswith(key_prefix))
    ]
    found.sort(key=lambda record: (record.get("due", 0), str(record.get("id"))))
    return [
        {
            "id": record.get("id"),
            "key": record.get("key"),
            "task": record.get("task"),
            "state": record.get("state"),
            "attempt": record.get("att"),
            "deadline": iso(record.get("due")),
            "args": record.get("args"),
            "kwargs": record.get("kwargs"),
            "recurring": "series" in record,
            "error": record.get("err"),
        }
        for record in found
    ]


def _text(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs\n"
    rows = [("DEADLINE", "STATE", "ATT", "ID", "TASK", "KEY", "ERROR")]
    for job in jobs:
        error = (job["error"] or "").strip().splitlines()
        rows.append(
            (
                job["deadline"],
                str(job["state"]),
                str(job["attempt"]),
                str(job["id"]),
                str(job["task"]),
                "" if job["key"] is None else str(job["key"]),
                error[-1] if error else "",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        for row in rows
    ).replace("  \n", "\n")


# A row's state where it says more than its record: 1 claimed (running on its owner), 3 dead, 4 paused.
_ROW_STATES: Final = {1: "running", 3: "dead", 4: "paused"}
_PAGE: Final = 10_000


def cluster_jobs(
    dsn: str, *, state: str | None = None, task: str | None = None, key_prefix: str | None = None
) -> dict[str, dict[str, Any]]:
    """A cluster database's jobs as records, by id: live ones and finished ones still kept (``cw_result``).

    Read-only, no lease, no lock: ``engine.cluster.jobs()``'s statement,
    filtered in the database, paged by its (deadline, id) cursor.
    """
    import asyncpg

    from .._cluster.sql import PAGE

    async def read() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        rows: list[Any] = []
        cursor: tuple[float, str] = (float("-inf"), "")
        try:
            while True:
                page = await conn.fetch(PAGE, state, task, key_prefix, *cursor, time.time(), _PAGE)
                rows += page
                if len(page) < _PAGE:
                    return rows
                cursor = (page[-1]["due"], page[-1]["id"])
        finally:
            await conn.close()

    found: dict[str, dict[str, Any]] = {}
    for row in asyncio.run(read()):
        record = orjson.loads(row["record"])
        if not row["finished"]:
            record["due"] = row["due"]
            record["state"] = _ROW_STATES.get(row["row_state"], record.get("state"))
        found[row["id"]] = record
    return found


def _run_on_cluster(args: argparse.Namespace) -> int:
    try:
        import asyncpg
    except ImportError:
        print("chronowheel jobs: a DSN needs asyncpg: pip install 'chronowheel[postgres]'", file=sys.stderr)
        return 2
    try:
        live = cluster_jobs(args.path, state=args.state, task=args.task, key_prefix=args.key_prefix)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"chronowheel jobs: cannot read the cluster's database: {exc}", file=sys.stderr)
        return 2
    jobs = list_jobs(live, state=args.state, task=args.task, key_prefix=args.key_prefix)
    if args.json:
        sys.stdout.write(json.dumps({"dsn": args.path, "jobs": jobs}, indent=2) + "\n")
    else:
        sys.stdout.write(_text(jobs))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.path.startswith(_DSN_SCHEMES):
        return _run_on_cluster(args)
    try:
        report = inspect_journal(args.path)
    except JournalMissing as exc:
        print(f"chronowheel jobs: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"chronowheel jobs: cannot read the journal at {args.path}: {exc}", file=sys.stderr)
        return 2
    jobs = list_jobs(report.live, state=args.state, task=args.task, key_prefix=args.key_prefix)
    problem = report.problem
    if args.json:
        damage = None if problem is None else {"path": problem.path, "problem": problem.problem}
        sys.stdout.write(json.dumps({"path": args.path, "jobs": jobs, "damage": damage}, indent=2) + "\n")
    else:
        sys.stdout.write(_text(jobs))
    if problem is not None:
        print(
            f"chronowheel jobs: {problem.path} is damaged ({problem.problem}); only the jobs before it are listed",
            file=sys.stderr,
        )
        return 1
    return 0
