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
record of a job whose task is not registered (parked, or refused). A
snapshot's ``jobs`` chunk becomes its jobs straight from its columns.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

from .._job import Job
from . import native
from .records import expand_jobs, job_from_record
from .schema import JOBS

__all__ = ["JobReplay", "PlainJobsPy"]


class PlainJobsPy:
    """The records a run of replay handles in one loop: the twin of ``_cjournal.PlainJobs`` (used when it is built).

    A one-shot pending job's record of the usual shape (nine fields, or ten
    with its key) whose task is in ``tasks`` becomes its :class:`Job`
    (:func:`.records.job_from_record`, inlined: the schema has checked it); a
    ``cancel`` or ``ack`` record drops its job. Any other record stops the
    loop and is left to :meth:`JobReplay._other`.
    """

    def __init__(self, job: type[Job]) -> None:
        self.job = job

    def replay(self, records: list[dict[str, Any]], start: int, live: dict[str, Any], tasks: dict[str, str]) -> int:
        """Replay records from ``start`` onto ``live``; the index of the first one left to the caller."""
        job_class = self.job
        for index in range(start, len(records)):
            record = records[index]
            kind = record["t"]
            if kind == "job":
                size = len(record)
                task = tasks.get(record["task"])
                if task is None or size > 10 or record["state"] != "pending" or (size == 10 and "key" not in record):
                    return index
                job = live[record["id"]] = job_class(
                    record["id"],
                    record.get("key"),
                    task,
                    tuple(record["args"]),
                    record["kwargs"],
                    record["prio"],
                    record["due"],
                    0,
                )
                job.attempt = record["att"]
            elif kind in ("cancel", "ack"):
                live.pop(record["id"], None)
            else:
                return index
        return len(records)

    def columns(self, record: dict[str, Any], start: int, live: dict[str, Any], tasks: dict[str, str]) -> int:
        """A ``jobs`` chunk's jobs from ``start`` onto ``live``; the index of the first of a task not in ``tasks``."""
        job_class = self.job
        ids, names, arguments, dues = record["id"], record["task"], record["args"], record["due"]
        priorities, attempts, keys, kwargs = record["prio"], record["att"], record["key"], record.get("kwargs")
        for index in range(start, len(ids)):
            task = tasks.get(names[index])
            if task is None:
                return index
            job = live[ids[index]] = job_class(
                ids[index],
                keys[index],
                task,
                tuple(arguments[index]),
                {} if kwargs is None else kwargs[index],
                priorities[index],
                dues[index],
                0,
            )
            job.attempt = attempts[index]
        return len(ids)


_PlainJobs: type[PlainJobsPy] = PlainJobsPy if native.PlainJobs is None else native.PlainJobs  # type: ignore[assignment]


class JobReplay:
    """Called with each run of records as recovery reads them; ``live`` then holds the live set in journal order.

    ``live`` maps each job id to its :class:`Job`, or to its record where
    there is no job to build: a ``done`` record, or a job of a task not in
    ``tasks`` (``kept`` counts those set: with none, ``live`` holds only
    jobs, and nothing need look for records in it). ``parents`` maps each run of a
    recurring job to its job and its series' id, to be linked once every job
    is read.
    """

    def __init__(self, tasks: Collection[str]) -> None:
        self.live: dict[str, Job | dict[str, Any]] = {}
        self.kept = 0  # entries of ``live`` set to a record (some may be gone or jobs again since)
        self.parents: dict[str, tuple[Job, str]] = {}
        self._tasks = {task: sys.intern(task) for task in tasks}  # a million jobs share a few task names
        self._plain = _PlainJobs(Job)

    def __call__(self, records: list[dict[str, Any]]) -> None:
        index, count = 0, len(records)
        plain, live, tasks = self._plain.replay, self.live, self._tasks
        while (index := plain(records, index, live, tasks)) < count:
            self._other(records[index])
            index += 1

    def _other(self, record: dict[str, Any]) -> None:
        """A record :class:`PlainJobsPy` leaves: a job of another shape or of an unknown task, a done, a move."""
        kind = record["t"]
        if kind == "job":
            job_id = record["id"]
            task = self._tasks.get(record["task"])
            if task is None:
                self.live[job_id] = record
                self.kept += 1
            else:
                job = self.live[job_id] = job_from_record(record)
                job.task = task
                if "parent" in record:
                    self.parents[job_id] = (job, record["parent"])
        elif kind == JOBS:
            index, count = 0, len(record["id"])
            while (index := self._plain.columns(record, index, self.live, self._tasks)) < count:
                self._other(expand_jobs(record, index, index + 1)[0])  # of a task not registered: parked
                index += 1
        elif kind == "done":
            self.live[record["id"]] = record
            self.kept += 1
        else:
            self._move(record)

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
