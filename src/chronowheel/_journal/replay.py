"""The live set rebuilt as jobs while the records are read: one pass, no dict of records in between.

Recovery reads a journal a run of records at a time (:func:`.recovery.plan`).
Replaying each run straight into :class:`~chronowheel._job.Job` objects lets
every decoded record die with its run: a million records never sit in memory
at once, and the memory of one run's records is reused by the next (a
recovery that first collected every record, then built the jobs, spent half
its time allocating and freeing them). Sans-IO: it sees decoded records only.

Records set state outright (see :mod:`.records`), and this replays them as
:func:`.records.apply` does: a ``job`` record replaces the job, a ``move``
sets its deadline, ``cancel``/``ack`` drop it. What is not a job the engine
can run is kept as its record: a ``done`` record (a kept outcome), and the
record of a job whose task is not registered (parked, or refused).
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

from .._job import Job
from .records import job_from_record

__all__ = ["JobReplay"]


class JobReplay:
    """Called with each run of records as recovery reads them; ``live`` then holds the live set in journal order.

    ``live`` maps each job id to its :class:`Job`, or to its record where
    there is no job to build: a ``done`` record, or a job of a task not in
    ``tasks``. ``parents`` maps each run of a recurring job to its job and its
    series' id, to be linked once every job is read.
    """

    def __init__(self, tasks: Collection[str]) -> None:
        self.live: dict[str, Job | dict[str, Any]] = {}
        self.parents: dict[str, tuple[Job, str]] = {}
        self._tasks = {task: sys.intern(task) for task in tasks}  # a million jobs share a few task names

    def __call__(self, records: list[dict[str, Any]]) -> None:
        live, tasks = self.live, self._tasks
        for record in records:
            kind = record["t"]
            if kind == "job":
                job_id = record["id"]
                task = tasks.get(record["task"])
                if task is None:
                    live[job_id] = record
                elif len(record) <= 10 and record["state"] == "pending" and (len(record) == 9 or "key" in record):
                    # job_from_record(), inlined for a one-shot job's plain record (the schema has checked it)
                    job = live[job_id] = Job(
                        job_id,
                        record.get("key"),
                        task,
                        tuple(record["args"]),
                        record["kwargs"],
                        record["prio"],
                        record["due"],
                        0,
                    )
                    job.attempt = record["att"]
                else:
                    job = live[job_id] = job_from_record(record)
                    job.task = task
                    if "parent" in record:
                        self.parents[job_id] = (job, record["parent"])
            elif kind == "done":
                live[record["id"]] = record
            elif kind == "move":
                self._move(record)
            else:  # cancel, ack
                live.pop(record["id"], None)

    def _move(self, record: dict[str, Any]) -> None:
        entry = self.live.get(record["id"])
        due = record["due"]
        if entry.__class__ is dict:  # a parked job's record (a done record has no deadline to move)
            assert isinstance(entry, dict)
            if entry["t"] == "job":
                entry["due"] = due
                if "series" in entry:
                    entry["series"]["nominal"] = due
        elif entry is not None:
            assert isinstance(entry, Job)
            entry._due_wall = due
            if entry._series is not None:
                entry._series.nominal = due
