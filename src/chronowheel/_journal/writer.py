"""``Journal``: the journal's loop side: recovery, then the outbox a loop turn appends to and the commits on it.

Files, for ``journal="var/timers.log"``:

* ``timers.log`` -- the log being appended to (generation ``g``);
* ``timers.log.snapshot`` -- every live job as of the start of generation
  ``s``; logs of generations below ``s`` are already in it;
* ``timers.log.old`` -- the previous log, while a snapshot is being written;
* ``*.tmp`` -- files being born; never read, removed at recovery;
* ``timers.log.lock`` -- held (``flock``) while an engine has the journal open.

Every rename is followed by an fsync of the directory, and a snapshot is
renamed into place only when complete and fsynced, so a crash at any point
leaves a set of files that recovery reads correctly. The event loop thread
only encodes payloads and appends them to a list, handed over once per loop
turn; the writer thread (:mod:`.thread`) frames, writes, fsyncs and renames,
and tells the loop when a hand-over is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

from .._errors import JournalFailed
from .._histogram import FSYNC_RECORDS, FSYNC_SECONDS, Histogram
from .files import take_lock
from .format import IDENTITY_SIZE, LOG, Encoder
from .native import settle as _native_settle
from .recovery import JournalFile, Replay, plan
from .repair import repair
from .thread import FsyncPolicy, WriterThread

__all__ = ["FsyncPolicy", "Journal", "JournalFile"]  # JournalFile lives in .recovery, FsyncPolicy in .thread

logger = logging.getLogger("chronowheel")

_T = TypeVar("_T")

_HANDOVER_MAX: Final = 4096  # records appended in one loop turn before they go to the writer mid-turn
_SNAPSHOT_IN_FLIGHT: Final = 2  # snapshot chunks queued to the writer before the compaction waits


def settle(pairs: list[Any]) -> None:
    """Set each future of ``pairs`` (future, value, future, value, ...) to its value, unless it is done.

    The pure twin of the native ``chronowheel._cframe.settle``: a durable
    hand-over's commits, settled in one call from the writer's wake-up.
    """
    if len(pairs) % 2:
        raise ValueError(f"pairs must hold a value for each future, got {len(pairs)} items")
    for index in range(0, len(pairs), 2):
        future = pairs[index]
        if not future.done():
            future.set_result(pairs[index + 1])


_settle: Final = settle if _native_settle is None else _native_settle  # the loop in C where it is built


class Journal:
    """The durable side of an engine: recover once, then append until closed.

    Loop-thread methods: :meth:`append`, :meth:`commit`, :meth:`sync`,
    :meth:`rotate`, :meth:`add_to_snapshot`, :meth:`finish_snapshot`,
    :meth:`close`. The writer thread owns the file descriptors.
    """

    def __init__(self, path: str, fsync: FsyncPolicy, interval: float) -> None:
        self.path = os.path.abspath(path)
        self._policy = fsync
        self._interval = interval
        self._lock_fd: int | None = None
        # What recovery leaves for the writer thread: the current log's framing, generation and descriptor.
        self._log = Encoder(LOG, bytes(IDENTITY_SIZE), 0, 0)
        self._generation = 0
        self._fd = -1
        self._writer: WriterThread | None = None  # from open() on: it owns the files
        # Written by the writer thread, read here (figures()): how long each fsync took, and what it covered.
        self._fsync_seconds = Histogram(FSYNC_SECONDS)
        self._fsync_records = Histogram(FSYNC_RECORDS)
        # Loop thread only. _pending and _batch are never replaced, only emptied: the native schedule() holds them.
        self._pending: list[Any] = []  # appended this loop turn (records, operation tuples): handed over together
        self._pending_operations = 0  # how many of _pending are operation tuples
        self._batch: list[Any] = []  # (future, value) pairs, flat, of commits waiting for _pending
        self._queued: list[tuple[list[Any], bool]] = []  # hand-overs before open(): the writer's first work
        self._appended = 0  # records and operations handed over so far: a hand-over is durable at its count
        self._logged = 0  # records of the current log handed over (log_records counts _pending's too)
        # Called after each hand-over (a loop turn's records, not each record): the store's compaction check.
        self.on_grown: Callable[[], None] | None = None
        self._chunks: deque[asyncio.Future[None]] = deque()  # snapshot chunks not yet written
        self._loop: asyncio.AbstractEventLoop | None = None
        self._durable = 0
        self._waiters: deque[tuple[int, list[Any]]] = deque()  # (a hand-over's count, its _batch): settled in order
        self._operations: set[asyncio.Future[None]] = set()
        self._failure: BaseException | None = None

    @property
    def generation(self) -> int:
        """The current log's generation: recovery's, then one more at each rotation."""
        return self._generation if self._writer is None else self._writer.generation

    # -- recovery (blocking: the engine runs it in a thread) ------------------------

    def recover(self, *, truncate_corrupt: bool, replay: Replay | None = None) -> dict[str, dict[str, Any]]:
        """Take the lock, read snapshot and logs, and leave one clean log to append to.

        Returns the live set: job id -> that job's last ``job`` record; or,
        given ``replay``, hands it the records instead (see :func:`.recovery.plan`)
        and returns an empty set.
        """
        self._take_lock()
        try:
            return self._recover(truncate_corrupt, replay)
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        self._lock_fd = take_lock(self.path)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self, truncate_corrupt: bool, replay: Replay | None) -> dict[str, dict[str, Any]]:
        found = plan(self.path, truncate_corrupt=truncate_corrupt, replay=replay)
        if found.problem is not None:
            raise found.problem
        if found.compact and replay is not None:
            # Rare (a compaction cut short, a version-1 journal): the snapshot it writes is of the records.
            found = plan(self.path, truncate_corrupt=truncate_corrupt)
            if found.problem is not None:
                raise found.problem
        self._log = repair(self.path, found)
        self._generation, self._logged = found.generation, found.log_records
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return found.live if replay is None else {}

    # -- the loop side ---------------------------------------------------------------

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread, with the files recovery left; records appended before this go first."""
        self._loop = loop
        histograms = (self._fsync_seconds, self._fsync_records)
        callbacks = (self._reached, self._done, self._failed)
        writer = WriterThread(
            self.path, self._policy, self._interval, self._log, self._fd, self._generation, histograms, loop, callbacks
        )
        self._writer, self._fd = writer, -1
        if self._queued:  # one hand-over: the count it is durable at is the last one's
            queued, self._queued = self._queued, []
            writer.hand([item for items, _ in queued for item in items], any(ops for _, ops in queued), self._appended)

    @property
    def log_records(self) -> int:
        """Records in the current log, appended or handed over: what compaction weighs against the live set."""
        return self._logged + len(self._pending) - self._pending_operations

    def outbox(self) -> tuple[list[Any], list[Any], Callable[[], None], int]:
        """What the native ``schedule()`` appends to as :meth:`append` and :meth:`durable` do, without a frame.

        ``_pending`` (a record goes to its end; the first of a turn has the
        loop call ``_hand_over`` soon, the ``_HANDOVER_MAX``-th calls it at
        once) and ``_batch`` (a commit's future and its value go to its end,
        before any hand-over). The native path runs only once :meth:`open`
        gave the journal its loop.
        """
        return self._pending, self._batch, self._hand_over, _HANDOVER_MAX

    def _enqueue(self, item: Any) -> None:
        """Queue an operation tuple (records go through :meth:`append`)."""
        self._raise_if_failed()
        pending = self._pending
        pending.append(item)
        self._pending_operations += 1
        if self._loop is None or len(pending) >= _HANDOVER_MAX:
            self._hand_over()
        elif len(pending) == 1:
            self._loop.call_soon(self._hand_over)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise JournalFailed(
                f"journal: writing {self.path} failed earlier; restart to recover", self._failure
            ) from self._failure

    def _hand_over(self) -> None:
        """Give the writer what this loop turn appended: one lock and one wake-up per turn, not per record."""
        pending = self._pending
        if not pending:
            return
        items = pending.copy()
        pending.clear()
        operations, self._pending_operations = self._pending_operations, 0
        self._logged += len(items) - operations
        self._appended += len(items)
        if self._batch:
            self._waiters.append((self._appended, self._batch.copy()))
            self._batch.clear()
        if self._writer is not None:
            self._writer.hand(items, operations > 0, self._appended)
        else:
            self._queued.append((items, operations > 0))
        if self.on_grown is not None:
            self.on_grown()

    def append(self, payload: bytes) -> None:
        """Queue one record; it is durable once a later :meth:`commit` returns.

        Every durable change comes through here: one frame, no call but the
        list's append, and a hand-over scheduled once per loop turn.
        """
        if self._failure is not None:
            self._raise_if_failed()
        pending = self._pending
        pending.append(payload)
        if len(pending) == 1 and self._loop is not None:
            self._loop.call_soon(self._hand_over)  # at the end of the turn
        elif len(pending) == 1 or len(pending) >= _HANDOVER_MAX:  # at once before open(), or the turn's 4,096th
            self._hand_over()

    def durable(self, value: _T) -> asyncio.Future[_T]:
        """A future of ``value``, done once every record appended so far is durable under the fsync policy.

        A future rather than a coroutine: an awaited ``schedule()`` waits on
        it directly, with no frame of ours to suspend and resume.
        """
        if self._failure is not None:
            raise JournalFailed(f"journal: writing {self.path} failed", self._failure) from self._failure
        future: asyncio.Future[_T] = asyncio.Future(loop=self._loop)  # not loop.create_future(): a frame on asyncio
        if self._pending:  # waits for this turn's records, with their own commits
            self._batch += (future, value)
        elif self._durable >= self._appended:
            future.set_result(value)
        else:  # waits for the last hand-over
            waiters = self._waiters
            if not waiters or waiters[-1][0] != self._appended:
                waiters.append((self._appended, []))
            waiters[-1][1].extend((future, value))
        return future

    def commit(self) -> asyncio.Future[None]:
        """Wait until every record appended so far is durable under the fsync policy."""
        return self.durable(None)

    def _submit(self, name: str, *args: Any) -> asyncio.Future[None]:
        """Queue an operation for the writer thread; the future is done when it has run."""
        assert self._loop is not None
        future = self._loop.create_future()
        self._operations.add(future)
        future.add_done_callback(self._operations.discard)
        self._enqueue((name, future, *args))
        return future

    async def _operation(self, name: str, *args: Any) -> None:
        await self._submit(name, *args)

    async def sync(self) -> None:
        """Wait until every record appended so far is written and fsynced, whatever the policy."""
        await self._operation("sync")

    async def rotate(self) -> None:
        """Start a new log; records appended from now on go to it."""
        self._logged = self._pending_operations - len(self._pending)  # log_records: 0
        await self._operation("rotate")

    async def add_to_snapshot(self, payloads: list[bytes]) -> None:
        """Queue ``job`` records for the snapshot begun by :meth:`rotate`.

        Waits while more than ``_SNAPSHOT_IN_FLIGHT`` chunks are unwritten, so
        that log records, and the commits waiting on them, queue behind a few
        chunks rather than behind the whole snapshot.
        """
        self._chunks.append(self._submit("snapshot", payloads))
        while len(self._chunks) > _SNAPSHOT_IN_FLIGHT:
            await self._chunks.popleft()

    async def finish_snapshot(self, count: int) -> None:
        """Seal the snapshot of ``count`` records, put it in place, drop the old log."""
        await self._operation("seal", count)

    def abandon_snapshot(self) -> None:
        self._chunks.clear()
        with contextlib.suppress(OSError):
            self._enqueue(("abandon", None))

    async def close(self) -> None:
        """Write out what is queued (fsynced unless the policy is ``never``), stop the thread."""
        self._hand_over()
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        elif self._fd >= 0:  # recovered, never opened
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self._release_lock()
        if self._failure is not None:
            raise JournalFailed(f"journal: writing {self.path} failed", self._failure) from self._failure

    def _reached(self, appended: int) -> None:
        """Loop thread: records up to ``appended`` are durable; wake their committers."""
        self._durable = max(self._durable, appended)
        waiters = self._waiters
        while waiters and waiters[0][0] <= appended:
            _settle(waiters.popleft()[1])

    def _failed(self, error: BaseException) -> None:
        """Loop thread: the writer gave up. Never retry a failed fsync: fail loudly, recover at restart."""
        self._failure = error
        logger.error("chronowheel: journal %s failed; durable operations now raise", self.path, exc_info=error)
        pairs = [item for _, group in self._waiters for item in group] + self._batch
        futures = pairs[::2] + list(self._operations)
        self._waiters.clear()
        self._batch.clear()
        for future in futures:
            if not future.done():
                future.set_exception(JournalFailed(f"journal: writing {self.path} failed: {error}", error))

    def _done(self, future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def figures(self) -> dict[str, Any]:
        """Loop thread: the log fsyncs' latency and records per fsync (``Histogram.report`` each), the log's records."""
        return {
            "fsync_seconds": self._fsync_seconds.report(),
            "records_per_fsync": self._fsync_records.report(),
            "log_records": self.log_records,
        }
