"""``WriterThread``: the thread that owns the journal's files once it is open.

It takes the loop's hand-overs (a loop turn's records and operations, in
order), frames a hand-over of records whole into one write, fsyncs under
the policy, and runs the operations: an explicit sync, a rotation to a new
log, a snapshot's chunks, its seal or its abandon. It tells the loop, by
``call_soon_threadsafe``, how far the hand-overs are durable, which
operation is done, and the error it stopped at: after a failure it writes
nothing more (a failed fsync is never retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from .._histogram import Histogram
from .files import SnapshotFile, create_log, fsync_directory, write_all
from .format import LOG, Encoder
from .repair import remove_old_log

__all__ = ["FsyncPolicy", "WriterThread"]

FsyncPolicy = Literal["always", "interval", "never"]


class WriterThread:
    """The writer thread of one open journal, and the queue the loop hands it work through.

    ``log`` frames the current log, whose descriptor is ``fd``; the
    histograms are written here and read by the loop. ``reached(count)``,
    ``done(future)`` and ``failed(error)`` run on the loop.
    """

    def __init__(
        self,
        path: str,
        policy: FsyncPolicy,
        interval: float,
        log: Encoder,
        fd: int,
        generation: int,
        histograms: tuple[Histogram, Histogram],
        loop: asyncio.AbstractEventLoop,
        callbacks: tuple[Callable[[int], None], Callable[[asyncio.Future[None] | None], None], Callable[..., None]],
    ) -> None:
        self.path = path
        self.snapshot_path = path + ".snapshot"
        self.old_path = path + ".old"
        self.generation = generation
        self._policy = policy
        self._interval = interval
        self._log = log
        self._fd = fd
        self._snapshot: SnapshotFile | None = None
        self._dirty = False
        self._last_fsync = time.monotonic()  # the interval policy's first fsync comes one interval after opening
        self._unsynced = 0  # records written since the last fsync
        self._fsync_seconds, self._fsync_records = histograms
        self._loop = loop
        self._reached, self._done, self._failed = callbacks
        # Shared with the loop thread, under _lock: hand-overs in order (payload bytes or operation tuples, whether
        # any is an operation), and the count of records handed over with the last of them.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: list[tuple[list[Any], bool]] = []
        self._handed = 0
        self._closing = False
        self._idle = False
        self._thread = threading.Thread(target=self._write_loop, name=f"chronowheel journal {path}", daemon=True)
        self._thread.start()

    # -- the loop side -----------------------------------------------------------------

    def hand(self, items: list[Any], operations: bool, appended: int) -> None:
        """One hand-over, durable once the thread reports ``appended``: one lock and one wake-up for the turn."""
        with self._lock:
            self._queue.append((items, operations))
            self._handed = appended
            if self._idle:
                self._ready.notify()

    async def stop(self) -> None:
        """Write out what is queued (fsynced unless the policy is ``never``), and wait for the thread to end."""
        with self._lock:
            self._closing = True
            self._ready.notify()
        await asyncio.to_thread(self._thread.join)

    # -- the thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        loop = self._loop
        reported = 0
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        wait = self._fsync_due_in()
                        if wait is not None and wait <= 0:
                            break
                        self._idle = True
                        self._ready.wait(wait)
                        self._idle = False
                    items, self._queue = self._queue, []
                    appended, closing = self._handed, self._closing
                self._process(items)
                if appended > reported and self._policy != "always":  # written is durable: not behind the fsync
                    reported = appended
                    loop.call_soon_threadsafe(self._reached, appended)
                if self._dirty and self._owes_fsync(closing):
                    self._fsync()
                if appended > reported:
                    reported = appended
                    loop.call_soon_threadsafe(self._reached, appended)
                if closing and not items:
                    break
        except BaseException as error:  # report every failure to the loop; the thread ends here
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(self._failed, error)
        finally:
            self._close_files()

    def _owes_fsync(self, closing: bool) -> bool:
        if self._policy == "always":
            return True
        if self._policy == "interval":
            return closing or self._last_fsync + self._interval <= time.monotonic()
        return False

    def _fsync_due_in(self) -> float | None:
        """Seconds until the interval policy owes an fsync; None if it owes none."""
        if self._policy != "interval" or not self._dirty:
            return None
        return self._last_fsync + self._interval - time.monotonic()

    def _process(self, handed: list[tuple[list[Any], bool]]) -> None:
        """Write what the loop handed over: a hand-over of records only is framed whole, into one write."""
        records: list[bytes] = []
        for items, operations in handed:
            if not operations:
                records += items
                continue
            for item in items:
                if item.__class__ is bytes:
                    records.append(item)
                    continue
                self._write_records(records)
                records = []
                name, future, *args = item
                getattr(self, f"_do_{name}")(*args)
                if future is not None:
                    self._loop.call_soon_threadsafe(self._done, future)
        self._write_records(records)

    def _write_records(self, records: list[bytes]) -> None:
        if records:
            write_all(self._fd, self._log.frames(records))
            self._dirty = True
            self._unsynced += len(records)

    def _fsync(self) -> None:
        began = time.monotonic()
        os.fsync(self._fd)
        self._dirty = False
        self._last_fsync = now = time.monotonic()
        self._fsync_seconds.observe(now - began)
        self._fsync_records.observe(self._unsynced)
        self._unsynced = 0

    # -- the operations (``_do_`` + the name the loop queued) -------------------------------

    def _do_sync(self) -> None:
        if self._dirty:
            self._fsync()

    def _do_rotate(self) -> None:
        self._do_sync()
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, self.old_path)
        fsync_directory(self.path)
        self.generation += 1
        self._log = Encoder(LOG, self._log.identity, self.generation, self._log.seq)
        create_log(self.path, self._log)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _do_snapshot(self, payloads: list[bytes]) -> None:
        """Write jobs to the snapshot of the current log's generation: it covers the records before that log."""
        if self._snapshot is None:
            self._snapshot = SnapshotFile(self.snapshot_path, self._log)
        self._snapshot.write(payloads)

    def _do_seal(self, count: int) -> None:
        """End the snapshot of ``count`` jobs, fsync it, rename it into place, and drop the old log."""
        snapshot = self._snapshot if self._snapshot is not None else SnapshotFile(self.snapshot_path, self._log)
        self._snapshot = None
        snapshot.seal(count)
        remove_old_log(self.path)

    def _do_abandon(self) -> None:
        if self._snapshot is not None:
            snapshot, self._snapshot = self._snapshot, None
            snapshot.abandon()

    def _close_files(self) -> None:
        for fd in (self._fd, -1 if self._snapshot is None else self._snapshot.fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = -1
        self._snapshot = None
