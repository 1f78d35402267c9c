"""``python -m chronowheel inspect``: reports a journal as recovery would read it, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, Every, JournalCorrupt, Retry
from chronowheel.__main__ import main
from chronowheel._inspect import command, inspect_journal, iso
from chronowheel._journal.format import LOG, SNAPSHOT, Decoder
from chronowheel._journal.writer import Journal
from chronowheel.testing import VirtualClock
from helpers import Runner, run_on
from journal_files import IDENTITY, build

SRC = Path(__file__).resolve().parent.parent / "src"
WALL = 1_767_225_600.0  # VirtualClock's wall time at 0: 2026-01-01T00:00:00Z


class Written:
    """What the engine did to a journal: the ids the test checks the report against."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.in_use: bool | None = None


def write_journal(run: Runner, path: Path) -> Written:
    """A journal written by an engine: jobs, a cancel, a reschedule, an ack, a retry, a dead job, a series."""
    written = Written()

    async def main() -> None:
        clock = VirtualClock()
        engine = Engine(journal=str(path), clock=clock, result_ttl=0)  # ack and cancel records, no done ones
        ran: list[int] = []

        @engine.task(name="email")
        async def email(n: int) -> None:
            ran.append(n)

        @engine.task(name="flaky", retry=Retry(2, backoff=100, jitter=False))
        async def flaky() -> None:
            raise RuntimeError("down")

        @engine.task(name="doomed")
        async def doomed() -> None:
            raise RuntimeError("no retry")

        @engine.task(name="report")
        async def report() -> None:
            pass

        async with engine:
            for name, delay in (("a", 10), ("b", 20), ("c", 30)):
                scheduled = await engine.schedule("email", args=(ord(name),), delay=delay, key=name)
                written.ids[name] = scheduled.id
            written.ids["flaky"] = (await engine.schedule("flaky", delay=5, key="flaky")).id
            written.ids["doomed"] = (await engine.schedule("doomed", delay=5)).id
            written.ids["hourly"] = (await engine.schedule("report", every=Every(3600), key="hourly")).id
            assert engine.cancel("b")
            assert engine.reschedule("c", delay=100)
            await clock.advance(15)  # a runs (ack), flaky fails once (retry in 100s), doomed dies
            assert ran == [ord("a")]
            await engine.flush()
            written.in_use = inspect_journal(str(path)).in_use

    run(main)
    return written


def snapshot_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.name.startswith(path.name)}


def recover_copy(path: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """What Journal.recover really rebuilds, run on a copy: the oracle for the report.

    Checks the log generation it leaves against the report's on the way.
    """
    copy = tmp_path / "copy"
    copy.mkdir()
    for source in path.parent.iterdir():
        if source.name.startswith(path.name) and source.is_file():
            shutil.copyfile(source, copy / source.name)
    journal = Journal(str(copy / path.name), "always", 0.1)
    live = journal.recover(truncate_corrupt=False)
    asyncio.run(journal.close())
    assert journal.generation == inspect_journal(str(path)).generation
    return live


def identity_of(path: Path) -> bytes:
    decoder = Decoder()
    decoder.feed(path.read_bytes()[:44])
    assert decoder.header is not None
    return decoder.header.identity


def record_offsets(path: Path) -> list[tuple[int, str]]:
    report = inspect_journal(str(path), records=True)
    assert report.records is not None
    return [(line["offset"], line["type"]) for line in report.records if line["file"] == "log"]


def job(job_id: str, due: float, task: str = "t") -> dict[str, Any]:
    """A ``job`` record, for journals built by hand."""
    record = {"t": "job", "id": job_id, "task": task, "args": [], "kwargs": {}, "due": due, "prio": 0}
    return {**record, "att": 0, "state": "pending"}


def test_engine_journal_text_records_and_json(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "timers.log"
    written = write_journal(run, path)
    ids = written.ids
    assert written.in_use in (True, None)  # True wherever /proc/locks tells
    before = snapshot_files(path)

    status, out, err = command(str(path))
    assert (status, err) == (0, "")
    assert "live set: 4 jobs, 1 recurring" in out
    assert "by task:  doomed 1, email 1, flaky 1, report 1" in out
    assert "by state: dead 1, failed 1, pending 2" in out
    assert "ending: clean" in out
    assert "would succeed (exit status 0)" in out
    # Next due: the failed flaky job (retry at 5 + 100), then c (moved to 100), the series at 3600; not the dead one.
    due = re.findall(r"^    (\S+)  ([0-9a-f]{32})  key=(\S+)  task=(\S+)  (\w+)", out, re.MULTILINE)
    assert due == [
        (iso(WALL + 100), ids["c"], "c", "email", "pending"),
        (iso(WALL + 105), ids["flaky"], "flaky", "flaky", "failed"),
        (iso(WALL + 3600), ids["hourly"], "hourly", "report", "pending"),
    ]
    assert iso(WALL + 100) == "2026-01-01T00:01:40.000Z"
    assert "records (" not in out

    status, out, _ = command(str(path), records=True)
    assert status == 0
    out_text = out
    lines = out.split("records (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    log_lines = [line.split() for line in lines if line.split()[0] == "log"]
    assert [fields[2] for fields in log_lines] == [f"#{n}" for n in range(1, len(log_lines) + 1)]
    kinds = [(fields[3], fields[4]) for fields in log_lines]
    assert kinds[:6] == [("job", ids[name]) for name in ("a", "b", "c", "flaky", "doomed", "hourly")]
    assert ("cancel", ids["b"]) in kinds
    assert ("move", ids["c"]) in kinds
    assert ("ack", ids["a"]) in kinds
    assert kinds.index(("cancel", ids["b"])) < kinds.index(("move", ids["c"])) < kinds.index(("ack", ids["a"]))
    first = log_lines[0]
    assert first[1] == "44"  # right after the 44-byte header
    assert first[5:] == ["task=email", "key=a", f"due={iso(WALL + 10)}", "state=pending", "attempt=0"]
    # The job record of c is listed as written, not as the later move left it in the live set.
    assert f"due={iso(WALL + 30)}" in next(line for line in lines if ids["c"] in line and " job " in line)
    assert f"due={iso(WALL + 100)}" in next(line for line in lines if ids["c"] in line and " move " in line)
    assert any("state=dead" in line and ids["doomed"] in line and "attempt=1" in line for line in lines)
    assert any("recurring" in line and ids["hourly"] in line for line in lines)

    status, out, _ = command(str(path), records=True, as_json=True)
    assert status == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert data["exit_status"] == 0
    assert data["error"] is None
    live = data["live"]
    assert live["count"] == 4
    assert live["recurring"] == 1
    assert live["by_task"] == {"doomed": 1, "email": 1, "flaky": 1, "report": 1}
    assert live["by_state"] == {"dead": 1, "failed": 1, "pending": 2}
    assert [job["id"] for job in live["next_due"]] == [ids["c"], ids["flaky"], ids["hourly"]]
    assert live["next_due"][0]["due_unix"] == WALL + 100
    roles = [(file["role"], file["kind"], file["replayed"], file["ending"]["status"]) for file in data["files"]]
    assert roles == [("log", "log", True, "clean")]  # a new journal has no snapshot until it compacts
    [log_file] = data["files"]
    assert log_file["size"] == len(before["timers.log"])
    assert log_file["records"] == len(kinds)
    assert (log_file["version"], log_file["generation"], log_file["seq"]) == (2, 1, 1)
    assert log_file["identity"] == identity_of(path).hex()
    assert f"format version 2, journal {log_file['identity']}, records numbered from 1" in out_text
    assert [(r["type"], r["id"]) for r in data["records"] if r["file"] == "log"] == kinds
    assert data["records"][0]["seq"] == 1

    # The report is what recovery really rebuilds, and nothing was touched.
    assert snapshot_files(path) == before
    recovered = recover_copy(path, tmp_path)
    assert set(recovered) == {ids[name] for name in ("c", "flaky", "doomed", "hourly")}
    assert inspect_journal(str(path)).live == recovered


def test_torn_tail_exit_0_reports_offset_changes_nothing(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "timers.log"
    write_journal(run, path)
    offsets = record_offsets(path)
    last_offset = offsets[-1][0]
    with path.open("r+b") as file:
        file.truncate(last_offset + 11)  # the last record's frame header and 3 bytes of its payload
    before = snapshot_files(path)

    status, out, err = command(str(path))
    assert (status, err) == (0, "")
    assert (
        f"torn tail at offset {last_offset}: last record cut short (11 bytes); recovery drops the last 11 bytes" in out
    )
    assert f"would truncate {path} to {last_offset} bytes" in out
    data = json.loads(command(str(path), as_json=True)[1])
    ending = data["files"][-1]["ending"]
    assert ending == {
        "status": "torn",
        "offset": last_offset,
        "reason": "last record cut short (11 bytes)",
        "dropped_bytes": 11,
    }
    assert data["ok"] is True
    assert snapshot_files(path) == before  # inspect never truncates
    assert inspect_journal(str(path)).live == recover_copy(path, tmp_path)


def test_corruption_exit_1_reports_offset_changes_nothing(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "timers.log"
    write_journal(run, path)
    offsets = record_offsets(path)
    middle = offsets[2][0]  # the job record of c, records follow it
    data = bytearray(path.read_bytes())
    data[middle + 30] ^= 0x01  # a bit in its payload: the CRC no longer matches
    path.write_bytes(bytes(data))
    before = snapshot_files(path)

    status, out, err = command(str(path))
    assert (status, err) == (1, "")
    assert f"CORRUPT at offset {middle}: CRC mismatch; damage, not a torn write, so recovery refuses it" in out
    assert "would FAIL with JournalCorrupt (exit status 1)" in out
    assert f"at byte offset {middle}" in out
    assert "live set: 2 jobs, 0 recurring (recovery would refuse this journal" in out  # a and b, before the damage

    status, out, _ = command(str(path), as_json=True)
    assert status == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["exit_status"] == 1
    assert report["error"]["offset"] == middle
    assert report["error"]["file"] == str(path)
    assert report["files"][-1]["ending"]["status"] == "corrupt"
    assert report["files"][-1]["ending"]["dropped_bytes"] == len(data) - middle
    assert report["recovery"] is None
    assert snapshot_files(path) == before

    with pytest.raises(JournalCorrupt) as raised:
        recover_copy(path, tmp_path)
    assert raised.value.offset == middle
    assert str(raised.value) == report["error"]["message"].replace(str(path), str(tmp_path / "copy" / path.name))


def test_stale_log_is_skipped_and_leftovers_are_listed(tmp_path: Path) -> None:
    """A compaction that sealed its snapshot (generation 2) but did not remove the previous log (1)."""
    path = tmp_path / "j.log"
    end = {"t": "end", "count": 2}
    # log 1 holds records 1 and 2; the snapshot of generation 2 holds them, and log 2 goes on from 3.
    (tmp_path / "j.log.snapshot").write_bytes(build([job("x", WALL + 1), job("y", WALL + 2), end], SNAPSHOT, 2, 3).data)
    (tmp_path / "j.log.old").write_bytes(build([job("gone", WALL), {"t": "cancel", "id": "x"}], LOG, 1, 1).data)
    (tmp_path / "j.log").write_bytes(build([{"t": "ack", "id": "y"}], LOG, 2, 3).data)
    (tmp_path / "j.log.snapshot.tmp").write_bytes(b"half a snapshot")
    before = snapshot_files(path)

    status, out, _ = command(str(path), records=True)
    assert status == 0
    assert "skipped: generation 1 < snapshot generation 2, already in the snapshot" in out
    assert "covers the records before number 3" in out
    assert f"leftover {path}.snapshot.tmp" in out
    assert "live set: 1 job, 0 recurring" in out
    assert f"would delete {path}.old (its records are in the snapshot)" in out
    assert "finish a compaction" not in out
    assert re.search(r"old\s+44\s+#1\s+job\s+gone", out)
    data = json.loads(command(str(path), as_json=True)[1])
    assert [(f["role"], f["generation"], f["replayed"]) for f in data["files"]] == [
        ("snapshot", 2, True),
        ("old", 1, False),
        ("log", 2, True),
    ]
    assert data["recovery"]["generation"] == 2
    assert snapshot_files(path) == before
    assert set(inspect_journal(str(path)).live) == set(recover_copy(path, tmp_path)) == {"x"}


def test_compaction_cut_short_is_finished_by_recovery(tmp_path: Path) -> None:
    """Rotated to log 2, snapshot not sealed: both logs replay, recovery writes snapshot and log 3."""
    path = tmp_path / "j.log"
    (tmp_path / "j.log.snapshot").write_bytes(build([job("x", WALL + 1), {"t": "end", "count": 1}], SNAPSHOT).data)
    (tmp_path / "j.log.old").write_bytes(build([job("y", WALL + 2, "u")], LOG, 1, 1).data)
    (tmp_path / "j.log").write_bytes(build([{"t": "cancel", "id": "x"}], LOG, 2, 2).data)
    before = snapshot_files(path)

    status, out, _ = command(str(path))
    assert status == 0
    assert out.count("; replayed") == 2
    assert "live set: 1 job, 0 recurring" in out
    assert "by task:  u 1" in out
    assert (
        "would finish a compaction: write a snapshot of generation 3 holding the 1 live jobs,"
        f" start an empty log of that generation, delete {path}.old" in out
    )
    assert "append to log generation 3" in out
    assert snapshot_files(path) == before
    assert set(recover_copy(path, tmp_path)) == {"y"}
    files = snapshot_files(tmp_path / "copy" / "j.log")
    assert sorted(files) == ["j.log", "j.log.lock", "j.log.snapshot"]
    snapshot = Decoder()
    snapshot.feed(files["j.log.snapshot"])
    assert snapshot.header == (SNAPSHOT, 3, IDENTITY, 3, 3)  # covers records 1 and 2, the log goes on from 3; version 3


def test_agrees_with_recovery_on_damaged_journals(tmp_path: Path) -> None:
    """Random damage to any of snapshot, old log and log: the same verdict, offset, message and live set as recovery."""
    engine_log = tmp_path / "engine" / "timers.log"
    engine_log.parent.mkdir()
    ids = write_journal(run_on("asyncio"), engine_log).ids
    # A compaction rotated log 1 (the engine's) to .old, its snapshot not sealed; the snapshot before it is the
    # first one: generation 1, covering nothing.
    engine_data = engine_log.read_bytes()
    identity = identity_of(engine_log)
    log_1 = Decoder()
    log_1.feed(engine_data)
    after: list[dict[str, Any]] = [
        {"t": "cancel", "id": ids["c"]},
        {"t": "move", "id": ids["flaky"], "due": WALL + 7},
        job("late", WALL + 8),
    ]
    pristine = {
        ".snapshot": build([{"t": "end", "count": 0}], SNAPSHOT, 1, 1, identity).data,
        ".old": engine_data,
        "": build(after, LOG, 2, log_1.next_seq, identity).data,
    }
    rng = random.Random(20260101)
    verdicts: Counter[tuple[str, str]] = Counter()
    for case in range(150):
        directory = tmp_path / f"case{case}"
        directory.mkdir()
        path = directory / "timers.log"
        damaged = rng.choice(list(pristine))
        for suffix, data in pristine.items():
            content = bytearray(data)
            if suffix == damaged:
                how = rng.choice(["truncate", "flip", "zero tail", "zero span"])
                # Zeroing starts at a byte that is not zero: damage that changes nothing is no damage.
                at = (
                    rng.choice([i for i, b in enumerate(content) if b])
                    if how.startswith("zero")
                    else rng.randrange(len(content))
                )
                if how == "truncate":
                    del content[at:]
                elif how == "flip":
                    content[at] ^= 1 << rng.randrange(8)
                elif how == "zero tail":
                    content[at:] = bytes(len(content) - at)
                else:
                    end = min(len(content), at + rng.randrange(1, 64))
                    content[at:end] = bytes(end - at)
            (directory / f"timers.log{suffix}").write_bytes(bytes(content))
        report = inspect_journal(str(path))
        refused: tuple[str, int] | None = None
        try:
            live = recover_copy(path, directory)
        except JournalCorrupt as exc:
            refused = (str(exc).replace(f"{directory}/copy/", f"{directory}/"), exc.offset)
        if refused is None:
            assert report.problem is None, (case, report.problem.problem)
            assert report.live == live
        else:
            assert report.problem is not None, (case, refused)
            assert (report.problem.problem, report.problem.problem_offset) == refused
        verdicts[damaged, "ok" if refused is None else "corrupt"] += 1
    # A snapshot is whole or corrupt; so is the .old log now: the log after it begins at the record after its
    # last, so a tail cut off it is a gap. The log was cut (torn) as well as damaged in the middle.
    assert verdicts.keys() == {(".snapshot", "corrupt"), (".old", "corrupt"), ("", "ok"), ("", "corrupt")}


def test_missing_journal_and_usage_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "timers.log"
    status, out, err = command(str(missing))
    assert (status, out) == (2, "")
    assert f"no journal at {missing}" in err
    assert not missing.parent.exists()  # not even its directory is created

    assert main(["inspect", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().err
    assert main(["fsck"]) == 2
    assert "unknown command 'fsck'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["inspect"])
    assert exited.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_entry_point_runs_as_a_module(tmp_path: Path) -> None:
    path = tmp_path / "timers.log"
    write_journal(run_on("asyncio"), path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "chronowheel", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["live"]["count"] == 4
    missing = subprocess.run(
        [sys.executable, "-m", "chronowheel", "inspect", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert str(tmp_path / "nope.log") in missing.stderr
