"""The child program of tests/test_crash.py: a journaled engine under load, there to be SIGKILLed.

``python crash_child.py JOURNAL --prefix P --seed S [options]`` opens
``Engine(journal=JOURNAL, fsync="always")`` on the real clock, with compaction
thresholds so small that the log is compacted many times a second, and runs
concurrent workers that schedule jobs under unique keys (mostly far in the
future; some due at once, so they run and are acknowledged) and now and then
cancel or reschedule an earlier key. It runs until it is killed.

Every line it prints is one ``os.write`` to stdout (which the parent opens in
append mode), so a kill never splits a line, and each is a fact the parent
checks against the journal it recovers:

* ``recovered N MISSING`` -- at start: the engine holds N jobs, and MISSING of
  the keys listed in ``--keys`` (the parent's own recovery) are not among them;
* ``sched KEY`` -- about to schedule KEY: a key never printed here must never be recovered;
* ``acked KEY`` -- ``await engine.schedule(...)`` returned, so KEY is durable;
* ``cancel KEY`` -- about to cancel KEY: from here on it may be gone;
* ``done KEY`` -- KEY's job ran: its ack may or may not be durable;
* ``running KEY TAKEN`` -- (``--series-crash``) the series KEY is running; TAKEN: ``get(KEY)`` finds it;
* ``rotated`` / ``compacted`` -- the writer thread began / sealed a compaction;
* ``step I OP FILE`` -- filesystem step I of the watched compaction or recovery is next;
* ``watched-steps STEPS`` / ``recovery-steps STEPS`` -- the watched compaction / recovery
  is over, after STEPS steps;
* ``crash WHERE`` -- the child kills itself now.

``--crash-at N --crash-compaction K`` kills the process with SIGKILL just
before the N-th filesystem step of its K-th compaction, or just after the last
step if N is one more than their number. ``--crash-recover-at M`` does the
same to the recovery in ``Engine.start``, and the child exits once started.
``--series-crash`` schedules one fixed-delay recurring job and dies in its run.
A step is a call that changes what the files hold: a creating ``open``, a
``write``, a ``replace``, an ``unlink`` of a file that is there. An ``fsync``
is not one: the kernel keeps a killed process's writes, so dying just before
an fsync leaves the same files as dying just after the step before it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import chronowheel._journal.files as files_module
import chronowheel._journal.repair as repair_module
import chronowheel._journal.store as store_module
import chronowheel._journal.thread as thread_module
import chronowheel._journal.writer as journal_module
from chronowheel import Engine, Every
from chronowheel._journal.recovery import Replay
from chronowheel._journal.store import JournalStore
from chronowheel._journal.thread import WriterThread
from chronowheel._journal.writer import Journal

TASK = "crash_child:record"  # the parent recovers the journal and checks the task name
SERIES = "crash_child:series"  # --series-crash: a fixed-delay recurring job that dies in its first run
LONG = (3000.0, 4000.0)  # delays that stay pending for the whole run
SHORT = (0.0, 0.05)  # delays that come due, run and are acknowledged while the child lives
POOL_TARGET = 120  # keep about this many long jobs live: cancel one whenever there are more
TIMEOUT = 60.0  # seconds: nothing the child waits for should take this long
STEP_JITTER = 0.004  # seconds; without --crash-at, each compaction step waits up to this long


def say(line: str) -> None:
    """One line to stdout in one write(2): a kill never tears it, and threads never interleave it."""
    os.write(1, (line + "\n").encode())


def die(reason: str) -> None:
    say(f"crash {reason}")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL ends every thread when the kill call returns


class StepCounter:
    """Stands in for ``os`` inside the journal's writer, files and repair modules; counts and numbers the watched steps.

    A step is a call that changes what the files hold (see the module docstring).
    While ``active``, each is announced and the process dies before step ``crash_at``;
    with ``crash_at=0`` each waits up to ``jitter`` seconds instead, which holds
    compaction open longer, so that more of the parent's kills land inside one.
    """

    def __init__(self, crash_at: int, jitter: float = 0.0, seed: int = 0) -> None:
        self.crash_at = crash_at
        self.jitter = jitter
        self.active = False
        self.steps = 0
        self._names: dict[int, str] = {}  # fd -> file name, to say what a write touches
        self._rng = random.Random(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _step(self, op: str, target: str) -> None:
        if not self.active:
            return
        self.steps += 1
        if not self.crash_at:
            time.sleep(self._rng.uniform(0, self.jitter))
            return
        say(f"step {self.steps} {op} {target}")
        if self.steps == self.crash_at:
            die(f"{self.steps} {op} {target}")

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        name = os.path.basename(path) if not os.path.isdir(path) else "<directory>"
        if flags & os.O_CREAT:
            self._step("open", name)
        fd = os.open(path, flags, mode)
        self._names[fd] = name
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._step("write", self._names.get(fd, "?"))
        return os.write(fd, data)

    def replace(self, source: str, target: str) -> None:
        self._step("replace", f"{os.path.basename(source)}->{os.path.basename(target)}")
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        if os.path.lexists(path):  # dying before removing what is not there changes nothing: no step
            self._step("unlink", os.path.basename(path))
        os.unlink(path)

    def finished(self) -> None:
        """The watched operation is over: die now if asked to die just after its last step."""
        self.active = False
        if self.crash_at == self.steps + 1:
            die(f"{self.crash_at} after the last step")


def watch_compaction(counter: StepCounter, which: int) -> None:
    """Announce every compaction; watch the steps of the ``which``-th, or of all if 0 (writer thread only)."""
    rotate, snapshot, seal = WriterThread._do_rotate, WriterThread._do_snapshot, WriterThread._do_seal
    compactions = 0

    def watched(method: Callable[..., None]) -> Callable[..., None]:
        def wrapper(writer: WriterThread, *args: Any) -> None:
            outer, counter.active = counter.active, which in (0, compactions)
            try:
                method(writer, *args)
            finally:
                counter.active = outer

        return wrapper

    def do_rotate(self: WriterThread) -> None:
        nonlocal compactions
        compactions += 1
        say("rotated")
        watched(rotate)(self)

    def do_seal(self: WriterThread, count: int) -> None:
        watched(seal)(self, count)
        say("compacted")
        if compactions == which:
            say(f"watched-steps {counter.steps}")
            counter.finished()

    WriterThread._do_rotate = do_rotate  # type: ignore[method-assign]
    WriterThread._do_snapshot = watched(snapshot)  # type: ignore[method-assign]
    WriterThread._do_seal = do_seal  # type: ignore[method-assign]


def watch_recovery(counter: StepCounter) -> None:
    """Count the filesystem steps of ``Journal._recover`` (it runs in a worker thread)."""
    recover = Journal._recover

    def do_recover(self: Journal, truncate_corrupt: bool, replay: Replay | None) -> dict[str, dict[str, Any]]:
        counter.active = True
        try:
            live = recover(self, truncate_corrupt, replay)
        finally:
            counter.active = False
        say(f"recovery-steps {counter.steps}")
        counter.finished()
        return live

    Journal._recover = do_recover  # type: ignore[method-assign]


class Load:
    """The workers and the keys they may cancel or reschedule."""

    def __init__(self, engine: Engine, prefix: str, rng: random.Random, keys: list[str]) -> None:
        self.engine = engine
        self.prefix = prefix
        self.rng = rng
        self.pool = list(keys)  # long jobs that may be cancelled or moved: recovered ones, then ours

    def take(self) -> str:
        """Remove a random key from the pool."""
        index = self.rng.randrange(len(self.pool))
        self.pool[index], self.pool[-1] = self.pool[-1], self.pool[index]
        return self.pool.pop()

    async def worker(self, number: int) -> None:
        engine, rng = self.engine, self.rng
        for n in range(sys.maxsize):
            key = f"{self.prefix}w{number}n{n}"
            long = rng.random() < 0.8
            delay = rng.uniform(*(LONG if long else SHORT))
            say(f"sched {key}")
            await engine.schedule(TASK, args=[key], delay=delay, key=key)
            say(f"acked {key}")
            if long:
                self.pool.append(key)
            roll = rng.random()
            if self.pool and (len(self.pool) > POOL_TARGET or roll < 0.1):
                victim = self.take()
                say(f"cancel {victim}")
                engine.cancel(victim)
            elif self.pool and roll < 0.3:
                victim = self.take()
                if rng.random() < 0.2:
                    engine.reschedule(victim, delay=rng.uniform(*SHORT))  # it runs soon: no longer a candidate
                else:
                    engine.reschedule(victim, delay=rng.uniform(*LONG))
                    self.pool.append(victim)


async def main(options: argparse.Namespace, keys: list[str]) -> None:
    JournalStore.compact_min = 50  # compact whenever the log holds over 2 records per live job, and over 100
    JournalStore.compact_factor = 2.0
    # A snapshot in slices of a fixed count, larger than the child's live set: its writes are as many in every run
    # (slices of time vary with the machine's load, and the live set with what fired), so "kill at step k" names
    # the same step in each child.
    vars(store_module)["SNAPSHOT_SLICE"] = 0.0
    vars(store_module)["_SLICE_STEP"] = 1 << 20
    counter = StepCounter(options.crash_at or options.crash_recover_at, STEP_JITTER, options.seed)
    for module in (journal_module, thread_module, files_module, repair_module):  # the modules that change the files
        vars(module)["os"] = counter  # only the journal's own calls go through it
    if options.crash_recover_at:
        watch_recovery(counter)
    else:
        watch_compaction(counter, options.crash_compaction if options.crash_at else 0)
    # No outcomes kept (result_ttl=0): the live set is the jobs alone, so the log compacts as often as the
    # parent's checks need; kept outcomes are tested across restarts in test_results.py.
    engine = Engine(journal=options.journal, fsync="always", result_ttl=0)

    @engine.task(TASK)
    async def record(key: str) -> None:
        say(f"done {key}")

    acked = asyncio.Event()  # --series-crash: the run waits for the schedule's ack (a slow fsync outlasts 0.01 s)
    if options.series_crash:

        @engine.task(SERIES)
        async def series_run(key: str) -> None:
            await acked.wait()
            say(f"running {key} {engine.get(key) is not None}")  # its key is taken while it runs
            await engine.flush()  # the series' record "waiting for this run to end" is durable
            die(f"mid-run of {key}")

    await engine.start()
    say(f"recovered {len(engine)} {sum(engine.get(key) is None for key in keys)}")
    if options.series_crash:
        key = f"{options.prefix}series"
        await engine.schedule(SERIES, args=[key], every=Every(0.01, fixed="delay"), key=key)
        say(f"acked {key}")
        acked.set()
        await asyncio.sleep(TIMEOUT)
    if options.crash_recover_at:
        os._exit(0)  # the recovery was the point: leave without another journal write
    load = Load(engine, options.prefix, random.Random(options.seed), keys)
    workers = [asyncio.create_task(load.worker(number)) for number in range(options.workers)]
    await asyncio.gather(*workers)


def run(options: argparse.Namespace) -> None:
    keys: list[str] = []
    if options.keys:
        with open(options.keys, encoding="utf-8") as file:
            keys = json.load(file)
    coroutine: Coroutine[Any, Any, None] = main(options, keys)
    if options.loop == "uvloop":
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("journal")
    parser.add_argument("--prefix", required=True, help="start of every key this run schedules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", help="JSON list of keys the journal should give back")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--crash-compaction", type=int, default=1)
    parser.add_argument("--crash-recover-at", type=int, default=0)
    parser.add_argument("--series-crash", action="store_true", help="die in the first run of a recurring job")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse(sys.argv[1:]))
