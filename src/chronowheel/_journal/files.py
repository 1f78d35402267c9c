"""The journal's file steps: the lock, a new empty log, a snapshot written under its temporary name.

Each step that changes what the files hold is ordered so that a crash
between any two leaves files recovery reads correctly: a file is written
and fsynced under a temporary name, renamed into place, and the directory
fsynced. Blocking calls; the writer thread (or recovery, before it starts)
runs them.
"""

from __future__ import annotations

import fcntl
import os
from typing import Final

import orjson

from .._errors import JournalLocked
from .format import SNAPSHOT, Encoder
from .schema import END

__all__ = ["SnapshotFile", "create_log", "fsync_directory", "take_lock", "write_all"]

_SNAPSHOT_SYNC_BYTES: Final = 16 << 20  # snapshot bytes written between fsyncs


def take_lock(path: str) -> int:
    """The journal's lock (``flock`` on ``<path>.lock``): its fd, or :class:`JournalLocked` if it is taken."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLocked(f"journal: {path} is open in another engine or process") from None
    return fd


def fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def create_log(path: str, log: Encoder) -> None:
    """Write an empty log under a temporary name, fsync it, and rename it into place."""
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, log.header)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path)


class SnapshotFile:
    """A snapshot being written to ``<path>.tmp``: it holds the records before ``log``'s first.

    Framed as it goes and fsynced every 16 MB (so that the seal's fsync stays
    short); :meth:`seal` ends it and renames it into place, :meth:`abandon`
    removes it.
    """

    def __init__(self, path: str, log: Encoder) -> None:
        self.path = path
        self._encoder = Encoder(SNAPSHOT, log.identity, log.generation, log.first)
        self.fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        write_all(self.fd, self._encoder.header)
        self._unsynced = 0  # bytes written since the last fsync

    def write(self, payloads: list[bytes]) -> None:
        data = self._encoder.frames(payloads)
        write_all(self.fd, data)
        self._unsynced += len(data)
        if self._unsynced >= _SNAPSHOT_SYNC_BYTES:
            os.fsync(self.fd)
            self._unsynced = 0

    def seal(self, count: int) -> None:
        """End the snapshot of ``count`` records, fsync it and rename it into place."""
        self.write([orjson.dumps({"t": END, "count": count})])
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.path + ".tmp", self.path)
        fsync_directory(self.path)

    def abandon(self) -> None:
        os.close(self.fd)
        self.fd = -1
        os.unlink(self.path + ".tmp")
