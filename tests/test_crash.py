"""Crash tests: a journaling engine in a child process is SIGKILLed, and recovery loses nothing acknowledged.

The child (``tests/crash_child.py``) runs ``Engine(journal=..., fsync="always")``
on the real clock under concurrent load, compacting many times a second, and
prints what it did: ``acked KEY`` once ``await engine.schedule(...)`` has
returned, ``cancel KEY`` before cancelling, ``done KEY`` when a job ran. The
parent kills it, recovers the journal itself (``Journal.recover`` with
``truncate_corrupt=False``: a SIGKILL may tear the log's tail, never corrupt
it) and proves, after every kill:

* every acknowledged key is live, unless it was cancelled or its job ran
  (an acked job that ran may still be live: at-least-once);
* nothing comes back that was never scheduled, and nothing that a recovery
  once found gone comes back later (no resurrection through old logs or
  snapshots);
* every live job is whole (its task, its key, its arguments), and no key is
  live twice;
* recovery leaves a clean journal: no ``.old`` log, no ``*.tmp`` file, and a
  second recovery changes no byte and gives the same live set; the next
  child's engine starts with exactly that set.

The tests:

* ``test_random_kills``: many cycles on the same journal, each child killed
  50-400 ms after its first acknowledged schedule (about half the kills land
  mid-compaction), on asyncio and uvloop. Each child starts on the journal the
  previous one left, and cancels and reschedules recovered jobs as well as its
  own. In about a third of the cycles the parent first appends part of a
  record to the log, as a write cut short by the kill leaves it, so recovery
  must cut a torn tail and the next child appends after the cut;
* ``test_crash_at_every_compaction_step``: the child kills itself before each
  filesystem step (creating ``open``, ``write``, ``replace``, ``unlink``; an
  ``fsync`` changes nothing a SIGKILL can tell apart) of its first compaction
  (the previous snapshot is the empty one a new journal starts with) or its
  second (the previous snapshot holds jobs), and after the last step;
* ...and from each distinct set of files such a crash left that recovery must
  finish compacting (an ``.old`` log), a recovery is killed before each of its
  own filesystem steps; the next recovery must then give exactly the live set
  an uninterrupted one gives;
* ``test_a_series_killed_mid_run_keeps_its_key``: a fixed-delay recurring
  job killed in its run still owns its key after the restart.

Environment:

* ``CHRONOWHEEL_CRASH_CYCLES`` (default 40): random-kill cycles. Above the
  default this is a soak, which also kills recovery at every step from every
  interrupted compaction, not only one of each kind:
  ``CHRONOWHEEL_CRASH_CYCLES=500 pytest tests/test_crash.py`` (``make soak``).
* ``CHRONOWHEEL_CRASH_SEED`` (default fixed): seeds kill times, event loops and
  the children's choices. Every failure message names the seed and cycle;
  set a fresh seed for each soak run to see new schedules.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chronowheel import DuplicateKey, Engine
from chronowheel._journal.format import Decoder
from chronowheel._journal.writer import Journal
from chronowheel.testing import VirtualClock
from crash_child import SERIES, TASK
from journal_files import next_frames

# One worker runs these one after another (`make test` distributes with --dist loadgroup): each child
# is a busy process of its own (fsync on every schedule, compacting many times a second), so two at once
# would take both cores from the other worker.
pytestmark = [pytest.mark.xdist_group("crash"), pytest.mark.heavy]

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"
SRC = HERE.parent / "src"

DEFAULT_CYCLES = 24
CYCLES = int(os.environ.get("CHRONOWHEEL_CRASH_CYCLES", str(DEFAULT_CYCLES)))
SOAK = CYCLES > DEFAULT_CYCLES
SEED = int(os.environ.get("CHRONOWHEEL_CRASH_SEED", "20251124"))
TIMEOUT = 60.0  # for a child to reach a point it reaches in well under a second unless something is wrong
# Which interrupted compaction (its files) recovery is killed at every step of, outside a soak: in the
# first compaction, the log renamed to .old and no new one yet; in the second, a snapshot half written
# beside the previous one. A soak walks recovery from every crash that leaves an .old log.
RECOVERY_WALKS = {
    1: ("timers.log.old",),  # a new journal has no snapshot until its first compaction seals one
    2: ("timers.log", "timers.log.old", "timers.log.snapshot", "timers.log.snapshot.tmp"),
}
LOOPS = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") is not None else ["asyncio"]

Live = dict[str, dict[str, Any]]


def child_env() -> dict[str, str]:
    """The parent's environment with this checkout's ``src`` first: works installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@dataclass
class Transcript:
    """What a child said it did (see crash_child.py)."""

    sched: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    recovered: tuple[int, int] | None = None  # (jobs the child's engine started with, --keys missing)
    rotations: int = 0
    compactions: int = 0
    steps: list[str] = field(default_factory=list)
    watched_steps: int | None = None
    recovery_steps: int | None = None
    crash: str | None = None
    running: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Transcript:
        transcript = cls()
        for line in text.split("\n")[:-1]:  # every line is written whole; ignore nothing after the last
            word, _, rest = line.partition(" ")
            if word == "sched":
                transcript.sched.add(rest)
            elif word == "acked":
                transcript.acked.add(rest)
            elif word == "cancel":
                transcript.cancelled.add(rest)
            elif word == "done":
                transcript.done.add(rest)
            elif word == "recovered":
                jobs, missing = rest.split()
                transcript.recovered = (int(jobs), int(missing))
            elif word == "rotated":
                transcript.rotations += 1
            elif word == "compacted":
                transcript.compactions += 1
            elif word == "step":
                transcript.steps.append(rest)
            elif word == "watched-steps":
                transcript.watched_steps = int(rest)
            elif word == "recovery-steps":
                transcript.recovery_steps = int(rest)
            elif word == "running":
                transcript.running.append(rest)
            elif word == "crash":
                transcript.crash = rest
            else:
                raise AssertionError(f"child printed an unknown line: {line!r}")
        return transcript


class Child:
    """One run of crash_child.py, its stdout and stderr in files (so it never blocks on a pipe)."""

    def __init__(self, workdir: Path, name: str, journal: Path, *args: str) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        with open(self.out, "ab") as out, open(self.err, "ab") as err:  # append mode: lines from two threads
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), str(journal), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=child_env(),
            )

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def transcript(self) -> Transcript:
        return Transcript.parse(self.text())

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, ready: Callable[[str], bool]) -> bool:
        """Poll the child's output until ``ready`` holds (True) or the child has exited (False)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            if ready(self.text()):
                return True
            if exited:
                return False
            time.sleep(0.002)
        raise AssertionError(f"child {self.out.stem} neither got there nor exited in {TIMEOUT}s: {self.stderr()}")

    def wait(self) -> int:
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"child {self.out.stem} did not exit in {TIMEOUT}s: {self.stderr()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@contextmanager
def child(workdir: Path, name: str, journal: Path, *args: str) -> Iterator[Child]:
    running = Child(workdir, name, journal, *args)
    try:
        yield running
    finally:
        running.kill()


def check_stderr(running: Child, context: str) -> int:
    """Only warnings about a torn log tail are allowed; how many there were."""
    lines = running.stderr().splitlines()
    unexpected = [line for line in lines if not ("chronowheel: journal" in line and "dropping its last" in line)]
    assert not unexpected, f"{context}: the child wrote to stderr:\n" + "\n".join(lines)
    return len(lines)


def recover(journal: Path) -> Live:
    """Recover the journal the way an engine does (a torn tail is cut; corruption raises), then let it go."""
    opened = Journal(str(journal), "always", 0.1)
    live = opened.recover(truncate_corrupt=False)
    asyncio.run(opened.close())
    return live


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def recover_and_check(journal: Path, before: set[str], transcript: Transcript, context: str) -> set[str]:
    """Recover, check the live set against what the child said and against the previous live set.

    ``before`` is the live set the child started from. Returns the recovered keys.
    """
    live = recover(journal)
    context = f"{context}: files after recovery {sorted(files(journal.parent))}"
    by_key: dict[str, dict[str, Any]] = {}
    for job_id, record in live.items():
        if record["t"] == "done":  # a finished job's kept outcome (result_ttl), not a live job
            continue
        key = record.get("key")
        assert isinstance(key, str), f"{context}: a live job without its key: {record}"
        assert key not in by_key, f"{context}: key {key} is live twice: {by_key[key]} and {record}"
        assert record["id"] == job_id, f"{context}: {record}"
        assert record["task"] == TASK, f"{context}: {record}"
        assert record["args"] == [key], f"{context}: {record}"
        assert record["state"] == "pending", f"{context}: {record}"
        by_key[key] = record
    recovered = set(by_key)
    required = (before | transcript.acked) - transcript.cancelled - transcript.done
    lost = required - recovered
    assert not lost, f"{context}: {len(lost)} acknowledged keys lost, e.g. {sorted(lost)[:10]}"
    unknown = recovered - before - transcript.sched
    assert not unknown, f"{context}: recovered keys never scheduled, or gone before: {sorted(unknown)[:10]}"

    directory = journal.parent
    leftovers = [name for name in files(directory) if name.endswith((".old", ".tmp"))]
    assert not leftovers, f"{context}: recovery left {leftovers}"
    contents = files(directory)
    assert recover(journal) == live, f"{context}: a second recovery gave a different live set"
    assert files(directory) == contents, f"{context}: a second recovery changed the files"
    return recovered


def ends_on_a_whole_record(log: Path) -> bool:
    """Whether the kill left the log whole: if it cut a write short, the log is torn already.

    A second write cut short after the first is no file a crash leaves (the next writer appends only once
    recovery has cut the first); recovery rightly takes it for damage.
    """
    decoder = Decoder()
    decoder.feed(log.read_bytes())
    return decoder.finish().status == "clean"


def tear(log: Path, rng: random.Random, key: str) -> None:
    """Append part of one more record: what a write(2) cut short by the kill leaves, and was never acknowledged.

    The record is whole otherwise (a live job of ``key``), so replaying any of it would show.
    """
    record = {"t": "job", "id": key, "key": key, "task": TASK, "args": [key], "kwargs": {}, "due": time.time()}
    record |= {"prio": 0, "att": 0, "state": "pending"}
    data = next_frames(log, [record])  # numbered on, and seeded by the log's header: whole, it would replay
    with open(log, "ab") as file:
        file.write(data[: rng.randrange(1, len(data))])


def test_random_kills(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(SEED)
    journal = tmp_path / "journal" / "timers.log"
    keys = tmp_path / "keys.json"
    live: set[str] = set()
    acknowledged = mid_compaction = compactions = torn = 0
    for cycle in range(CYCLES):
        context = f"CHRONOWHEEL_CRASH_SEED={SEED} cycle {cycle}"
        keys.write_text(json.dumps(sorted(live)), encoding="utf-8")
        loop = rng.choice(LOOPS)
        seed = rng.randrange(1 << 32)
        linger = rng.uniform(0.05, 0.4)
        arguments = ["--prefix", f"c{cycle}", "--seed", str(seed), "--keys", str(keys), "--loop", loop]
        with child(tmp_path, f"cycle{cycle}", journal, *arguments) as running:
            started = running.wait_for(lambda text: "\nacked " in "\n" + text)
            assert started, f"{context}: the child exited before acknowledging anything: {running.stderr()}"
            time.sleep(linger)
            assert running.process.poll() is None, f"{context}: the child died on its own: {running.stderr()}"
        transcript = running.transcript()
        context += f" ({loop}, killed {linger * 1000:.0f} ms after its first ack)"
        check_stderr(running, context)
        assert transcript.recovered == (len(live), 0), f"{context}: the child started from {transcript.recovered}"
        # The next child appends where a torn write was cut off.
        if journal.exists() and rng.random() < 0.3 and ends_on_a_whole_record(journal):
            tear(journal, rng, f"c{cycle}torn")
            torn += 1
        live = recover_and_check(journal, live, transcript, context)
        acknowledged += len(transcript.acked)
        compactions += transcript.compactions
        mid_compaction += transcript.rotations > transcript.compactions
    cut = sum("dropping its last" in record.getMessage() for record in caplog.records)
    print(
        f"\n{CYCLES} kills, {acknowledged} acknowledged schedules checked, {compactions} compactions,"
        f" {mid_compaction} kills mid-compaction, {cut} torn tails cut ({torn} of them torn on purpose),"
        f" {len(live)} jobs live at the end"
    )
    assert cut >= torn, "recovery did not cut every torn tail"
    assert compactions >= CYCLES, "the children hardly compacted: the test proves less than it claims"


def file_kinds(directory: Path) -> tuple[str, ...]:
    """Which journal files there are (lock aside): recovery's situation after a crash."""
    return tuple(name for name in sorted(os.listdir(directory)) if not name.endswith(".lock"))


def crash_recovery_everywhere(tmp_path: Path, state: Path, transcript: Transcript, expected: set[str]) -> int:
    """From the files a crashed compaction left, kill recovery before each of its steps; how many kills.

    Whatever recovery step it died at, the next recovery gives exactly ``expected``.
    """
    keys = tmp_path / f"{state.name}.keys.json"
    keys.write_text(json.dumps(sorted(expected)), encoding="utf-8")
    for step in itertools.count(1):
        context = f"CHRONOWHEEL_CRASH_SEED={SEED} recovery from {state.name} ({file_kinds(state)}) killed at {step}"
        directory = tmp_path / f"{state.name}-recovery{step}"
        shutil.copytree(state, directory)
        journal = directory / "timers.log"
        arguments = ["--prefix", "r", "--keys", str(keys), "--crash-recover-at", str(step)]
        with child(tmp_path, directory.name, journal, *arguments) as running:
            returncode = running.wait()
        said = running.transcript()
        check_stderr(running, context)
        if said.crash is None:
            assert returncode == 0, f"{context}: {running.stderr()}"
            assert said.recovery_steps is not None, context
            assert said.recovery_steps + 1 < step, context
            assert said.recovered == (len(expected), 0), f"{context}: the child started from {said.recovered}"
            assert step > 2, f"{context}: recovery took no steps: it had no compaction to finish"
            return step - 1
        assert returncode == -signal.SIGKILL, f"{context}: {running.stderr()}"
        context += f" ({said.crash})"
        recovered = recover_and_check(journal, set(), transcript, context)
        assert recovered == expected, f"{context}: {sorted(recovered ^ expected)[:10]} differ"
        shutil.rmtree(directory)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("compaction", [1, 2])
def test_crash_at_every_compaction_step(tmp_path: Path, compaction: int) -> None:
    """Kill the child before each step of its ``compaction``-th compaction, then recovery before each of its steps."""
    crashes: list[str] = []
    walked: set[tuple[str, ...]] = set()  # interrupted compactions whose recovery has been killed everywhere
    recovery_kills = 0
    for step in itertools.count(1):
        context = f"CHRONOWHEEL_CRASH_SEED={SEED} compaction {compaction} killed at step {step}"
        directory = tmp_path / f"step{step}"
        journal = directory / "timers.log"
        arguments = ["--prefix", f"s{step}", "--seed", str(SEED + step), "--crash-at", str(step)]
        arguments += ["--crash-compaction", str(compaction)]

        def over(text: str, step: int = step) -> bool:
            if "\ncrash " in "\n" + text:
                return True
            finished = re.search(r"^watched-steps (\d+)$", text, re.MULTILINE)
            return finished is not None and int(finished[1]) + 1 < step

        with child(tmp_path, directory.name, journal, *arguments) as running:
            running.wait_for(over)
            running.kill()
        transcript = running.transcript()
        check_stderr(running, context)
        if transcript.crash is None:  # the compaction finished before reaching this step: all are covered
            assert transcript.watched_steps is not None, f"{context}: {running.stderr()}"
            break
        assert running.process.returncode == -signal.SIGKILL, context
        crashes.append(transcript.crash)
        kinds = file_kinds(directory)
        context += f" ({transcript.crash}; files {kinds})"
        state = tmp_path / f"state{step}"
        walk = "timers.log.old" in kinds and (SOAK or (not walked and kinds == RECOVERY_WALKS[compaction]))
        if walk:  # recovery has a compaction to finish: keep the files to crash it too
            shutil.copytree(directory, state)
        expected = recover_and_check(journal, set(), transcript, context)
        if walk:
            walked.add(kinds)
            recovery_kills += crash_recovery_everywhere(tmp_path, state, transcript, expected)
            shutil.rmtree(state)
        shutil.rmtree(directory)

    where = " | ".join(crashes)
    print(f"\ncompaction {compaction}: killed at {len(crashes)} steps: {where}; recovery killed {recovery_kills} times")
    # The walk covers compaction from start to end: if the journal's steps change, the child must still see them.
    for essential in (
        "replace timers.log->timers.log.old",
        "replace timers.log.tmp->timers.log",
        "replace timers.log.snapshot.tmp->timers.log.snapshot",
        "unlink timers.log.old",
        "after the last step",
    ):
        assert essential in where, f"no crash at {essential!r}: {where}"
    assert recovery_kills > 0


async def restart(journal: Path, key: str) -> None:
    """Start an engine on the journal (virtual clock, nothing due) and use the series' key."""
    engine = Engine(journal=str(journal), clock=VirtualClock(wall=time.time() - 86_400))

    @engine.task(SERIES)
    async def series_run(key: str) -> None:
        raise AssertionError("nothing is due on this clock")

    await engine.start()
    try:
        assert engine.get(key) is not None, f"after the restart, get({key!r}) finds no job"
        with pytest.raises(DuplicateKey):
            await engine.schedule(SERIES, args=[key], delay=60, key=key)
    finally:
        await engine.stop(grace=0)


def test_a_series_killed_mid_run_keeps_its_key(tmp_path: Path) -> None:
    journal = tmp_path / "journal" / "timers.log"
    with child(tmp_path, "series", journal, "--prefix", "x", "--series-crash") as running:
        returncode = running.wait()
    said = running.transcript()
    assert returncode == -signal.SIGKILL, running.stderr()
    assert said.acked == {"xseries"}
    assert said.running == ["xseries True"], "before the crash, get(key) finds the running series"
    assert said.crash == "mid-run of xseries"
    asyncio.run(restart(journal, "xseries"))
