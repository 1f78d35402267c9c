"""Recovery's repairs, carried out: what :func:`~.recovery.plan` found, made right on disk before appending.

Delete the files being born, cut torn tails (logging what is dropped),
finish a compaction that was cut short (or rewrite a version-1 journal) as
a snapshot of every live job and a new empty log, and remove the ``.old``
log once nothing needs it. In that order: a snapshot never stands without
a log or an ``.old`` log beside it. Blocking; the engine runs it in a thread
before the writer thread starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Final

import orjson

from .files import SnapshotFile, create_log, fsync_directory
from .format import IDENTITY_SIZE, LOG, Encoder
from .recovery import RecoveryPlan

__all__ = ["remove_old_log", "repair"]

logger = logging.getLogger("chronowheel")

_SNAPSHOT_CHUNK: Final = 4096  # records per write when recovery finishes a compaction itself


def repair(path: str, found: RecoveryPlan) -> Encoder:
    """Carry out ``found`` (a plan with no problem) for the journal at ``path``; the encoder of its log."""
    for leftover in found.leftovers:
        os.unlink(leftover)
    for verdict in found.files:
        if verdict.dropped:
            assert verdict.ending is not None
            log_at = logger.error if verdict.ending.status == "corrupt" else logger.warning
            log_at(
                "chronowheel: journal %s: %s; dropping its last %d bytes",
                verdict.path,
                verdict.ending.reason,
                verdict.dropped,
            )
    for torn, offset in found.truncate:
        with open(torn, "r+b") as file:
            file.truncate(offset)
            os.fsync(file.fileno())
    identity = found.identity if found.identity is not None else os.urandom(IDENTITY_SIZE)
    log = Encoder(LOG, identity, found.generation, found.first_seq, found.next_seq)
    if found.compact:  # finish the cut-short compaction now (or rewrite a version-1 journal)
        snapshot = SnapshotFile(path + ".snapshot", log)
        records = list(found.live.values())
        for start in range(0, len(records), _SNAPSHOT_CHUNK):
            snapshot.write([orjson.dumps(record) for record in records[start : start + _SNAPSHOT_CHUNK]])
        snapshot.seal(len(records))  # the logs are stale from here on: the snapshot holds them
    if found.compact or found.new_log:
        # Before the .old log goes: a snapshot never stands without a log or an .old log beside it.
        create_log(path, log)
    if found.remove_old:
        remove_old_log(path)
    return log


def remove_old_log(path: str) -> None:
    """Delete ``<path>.old``, if it is there, and fsync the directory."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + ".old")
        fsync_directory(path)
