"""The ``chronowheel`` command: ``jobs`` over a journal (read-only), and ``worker`` as a real process."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from chronowheel import Engine, Retry
from chronowheel.__main__ import main
from chronowheel._cli import worker
from chronowheel.testing import VirtualClock

SRC = Path(__file__).resolve().parents[1] / "src"


async def write_jobs(path: Path) -> None:
    """A journal holding two pending jobs (keys a:1 and b:1), one waiting for a retry and one dead."""
    clock = VirtualClock()
    engine = Engine(clock=clock, journal=str(path))

    @engine.task(name="mail")
    async def mail(to: str) -> None:
        pass

    @engine.task(name="flaky", retry=Retry(3, backoff=100, jitter=False))
    async def flaky() -> None:
        raise ValueError("flaky said no")

    @engine.task(name="doomed")
    async def doomed() -> None:
        raise RuntimeError("doomed <for> sure")

    async with engine:
        await engine.schedule(mail, args=("ann",), delay=60, key="a:1")
        await engine.schedule(mail, args=("bob",), delay=30, key="b:1")
        await engine.schedule(flaky, delay=1, key="a:flaky")
        await engine.schedule(doomed, delay=2)
        await clock.advance(3)
        await engine.flush()


@pytest.fixture
async def journal(tmp_path: Path) -> Path:
    path = tmp_path / "timers.log"
    await write_jobs(path)
    return path


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["flaky", "doomed", "mail", "mail"]),  # by deadline: flaky's retry is due at 101 s
        (["--state", "dead"], ["doomed"]),
        (["--state", "failed"], ["flaky"]),
        (["--state", "pending"], ["mail", "mail"]),
        (["--task", "mail"], ["mail", "mail"]),
        (["--key-prefix", "a:"], ["mail", "flaky"]),
        (["--key-prefix", "a:", "--state", "pending"], ["mail"]),
        (["--task", "nobody"], []),
    ],
    ids=["all", "dead", "failed", "pending", "task", "key-prefix", "key-and-state", "none"],
)
async def test_jobs_filters(
    journal: Path, options: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs", str(journal), "--json", *options]) == 0
    found = json.loads(capsys.readouterr().out)["jobs"]
    assert sorted(job["task"] for job in found) == sorted(expected)
    deadlines = [job["deadline"] for job in found]
    assert deadlines == sorted(deadlines)
    for job in found:
        if job["task"] in ("flaky", "doomed"):
            assert job["error"].rstrip().endswith(("ValueError: flaky said no", "RuntimeError: doomed <for> sure"))
        else:
            assert job["error"] is None


async def test_jobs_text_shows_the_last_line_of_each_error(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", str(journal), "--state", "dead"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["DEADLINE", "STATE", "ATT", "ID", "TASK", "KEY", "ERROR"]
    assert row.split()[1:3] == ["dead", "1"]
    assert row.endswith("RuntimeError: doomed <for> sure")


async def test_jobs_reads_a_journal_in_use_without_its_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "timers.log"
    engine = Engine(clock=VirtualClock(), journal=str(path))

    @engine.task(name="mail")
    async def mail() -> None:
        pass

    async with engine:
        await engine.schedule(mail, delay=10, key="k")
        assert main(["jobs", str(path), "--json"]) == 0
        assert [job["key"] for job in json.loads(capsys.readouterr().out)["jobs"]] == ["k"]
        assert engine.get("k") is not None  # the engine's lock and its jobs untouched


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["jobs", "{tmp}/nope.log"], "no journal at {tmp}/nope.log"),
        (["jobs", "postgresql://postgres@/postgres?host={tmp}"], "cannot read the cluster's database"),
        (["worker", "nomodule_here:engine"], "no module named 'nomodule_here'"),
        (["worker", "json"], "ENGINE must be module:attribute"),
        (["worker", "json:nothing"], "json has no attribute 'nothing'"),
        (["worker", "json:dumps"], "is a function, not a chronowheel.Engine"),
        (["worker", "json:dumps", "--web", "localhost"], "--web must be HOST:PORT"),
        (["worker", "json:dumps", "--grace", "-1"], "--grace must be seconds, at least 0, got -1.0"),
        (["bench", "--n", "ten"], "--n must be timer counts"),
    ],
    ids=["missing", "dsn", "no-module", "no-colon", "no-attribute", "not-an-engine", "bad-address", "grace", "bench-n"],
)
def test_usage_errors_exit_2_and_name_the_argument(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


APP = """
import asyncio, os
from chronowheel import Engine

engine = Engine(journal=os.environ["APP_JOURNAL"])

@engine.task(name="work")
async def work(i: int) -> None:
    print(f"started {i}", flush=True)
    await asyncio.sleep(float(os.environ["APP_JOB_SECONDS"]))
    print(f"finished {i}", flush=True)
"""


class Worker:
    """``chronowheel worker app:engine`` in a child process, its output read line by line as it comes."""

    def __init__(self, tmp_path: Path, grace: float, job_seconds: float, *options: str) -> None:
        (tmp_path / "app.py").write_text(textwrap.dedent(APP))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]),
            "APP_JOURNAL": str(tmp_path / "timers.log"),
            "APP_JOB_SECONDS": str(job_seconds),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chronowheel", "worker", "app:engine", "--grace", str(grace), *options],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._partial = b""

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Read the child's output (unbuffered, as it comes) until a line holds ``text``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, f"no {text!r} in {self.lines}"
                assert selector.select(left), f"no {text!r} in {self.lines}"
                chunk = os.read(fd, 65536)
                assert chunk, f"the worker ended before {text!r}: {self.lines}"
                *whole, self._partial = (self._partial + chunk).split(b"\n")
                self.lines += [line.decode() + "\n" for line in whole]

    def finish(self) -> int:
        out, _ = self.process.communicate(timeout=30)
        self.lines += (self._partial + out).decode().splitlines(keepends=True)
        return self.process.returncode


async def schedule_two(path: Path) -> None:
    engine = Engine(journal=str(path))

    @engine.task(name="work")
    async def work(i: int) -> None:
        pass

    async with engine:
        for i in range(2):
            await engine.schedule(work, args=(i,), delay=0.2)
        await engine.stop(grace=0)  # before they are due: both stay in the journal


@pytest.mark.parametrize(
    ("grace", "job_seconds", "signals", "status", "left"),
    [
        (10.0, 0.3, 1, 0, 0),  # SIGTERM drains: both finish within the grace, both acknowledged
        (0.3, 60.0, 1, 3, 2),  # the grace runs out: cancelled, both still in the journal
        (60.0, 60.0, 2, 3, 2),  # a second SIGTERM cancels at once
    ],
    ids=["drains", "grace-runs-out", "second-signal"],
)
def test_worker_stops_on_sigterm(
    tmp_path: Path, grace: float, job_seconds: float, signals: int, status: int, left: int
) -> None:
    journal = tmp_path / "timers.log"
    asyncio.run(schedule_two(journal))
    child = Worker(tmp_path, grace, job_seconds)
    try:
        child.wait_for("started 0")
        child.wait_for("started 1")
        for answer in ("SIGTERM: stopping", "SIGTERM: cancelling the running jobs now")[:signals]:
            child.process.send_signal(signal.SIGTERM)
            child.wait_for(answer)
        assert child.finish() == status, "".join(child.lines)
    finally:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()
    output = "".join(child.lines)
    assert output.count("finished") == (2 if status == 0 else 0)
    assert "on uvloop" in output  # installed with the dev extra: the worker uses it
    done = subprocess.run(
        [sys.executable, "-m", "chronowheel", "jobs", str(journal), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=60,
        check=True,
    )
    states = sorted(job["state"] for job in json.loads(done.stdout)["jobs"])
    assert states == ["pending"] * left + ["succeeded"] * (2 - left)  # finished ones kept for result_ttl


def test_worker_serves_the_dashboard_and_metrics(tmp_path: Path) -> None:
    parser = pytest.importorskip("prometheus_client.parser")  # the extras are in dev
    pytest.importorskip("uvicorn")

    journal = tmp_path / "timers.log"
    asyncio.run(schedule_two(journal))
    child = Worker(tmp_path, 10.0, 0.05, "--web", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    try:
        child.wait_for("finished 1")
        output = "".join(child.lines)
        metrics = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", output)
        web = re.search(r"dashboard on (http://127\.0\.0\.1:\d+/)", output)
        assert metrics is not None
        assert web is not None
        with urllib.request.urlopen(metrics[1], timeout=10) as response:
            families = {
                family.name: family for family in parser.text_string_to_metric_families(response.read().decode())
            }
        (sample,) = families["chronowheel_jobs_succeeded"].samples
        assert (sample.labels, sample.value) == ({"pool": "default", "task": "work"}, 2)
        with urllib.request.urlopen(web[1] + "api/overview", timeout=10) as response:
            assert json.loads(response.read())["pools"]["default"]["concurrency"] == 10
        child.process.send_signal(signal.SIGINT)
        assert child.finish() == 0
    finally:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


FAKE_BENCH = """
CONTENDERS = ["chronowheel-native", "asyncio"]
FIGURES = {"insert": 1e-6, "cancel": 1e-6, "reschedule": 1e-6, "fire": 1e-6, "rss_per_timer": 100.0}

def run(contender, n):
    if (contender, n) == ("asyncio", 2000):
        raise RuntimeError("asyncio failed: out of luck")
    return {k: v * n / 1000 for k, v in FIGURES.items()}

def report(n, results):
    print(f"report N={n}: {sorted(results)}")
"""


def test_bench_runs_each_contender_per_n_and_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")  # the bench extra (in dev)
    pytest.importorskip("matplotlib")
    fake = tmp_path / "bench_timers.py"
    fake.write_text(FAKE_BENCH)
    monkeypatch.setenv("CHRONOWHEEL_BENCH", str(fake))
    plot = tmp_path / "cost.png"
    assert main(["bench", "--n", "2000,1000", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "report N=1000: ['asyncio', 'chronowheel-native']" in out  # sizes in order, each contender per size
    assert "report N=2000: ['chronowheel-native']" in out  # a contender that failed at one size is left out
    assert "asyncio at N=2,000: asyncio failed: out of luck" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_outside_a_checkout_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")  # the bench extra (in dev)
    monkeypatch.setenv("CHRONOWHEEL_BENCH", str(tmp_path / "missing.py"))
    assert main(["bench", "--n", "1000"]) == 2
    assert "bench/bench_timers.py not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "missing", "message"),
    [
        (["bench", "--n", "1000"], "rich.progress", "bench: needs the bench extra: pip install 'chronowheel[bench]'"),
        (["bench", "--plot", "x.png"], "matplotlib", "needs the bench extra: pip install 'chronowheel[bench]'"),
        (
            ["worker", "json:dumps", "--web", ":0"],
            "starlette",
            "--web needs the web extra: pip install 'chronowheel[web]'",
        ),
        (["worker", "json:dumps", "--web", ":0"], "uvicorn", "--web needs the web extra"),
        (["worker", "json:dumps", "--metrics", ":0"], "prometheus_client", "--metrics needs the prometheus extra"),
    ],
    ids=["bench-rich", "bench-plot", "web-starlette", "web-uvicorn", "metrics"],
)
def test_a_missing_extra_is_named(
    argv: list[str], missing: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import fails, as when it is not installed
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        status: int = response.status
        return status


class Announced(logging.Handler):
    """The worker's log, and an event set when it says it is running."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.running = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.getMessage().startswith("running "):
            self.running.set()


async def test_worker_serve_in_this_process_until_sigterm(tmp_path: Path) -> None:
    """The worker's loop body in-process (what the subprocess tests run, here seen by coverage too)."""
    pytest.importorskip("prometheus_client")
    pytest.importorskip("uvicorn")
    from prometheus_client import REGISTRY

    engine = Engine(journal=str(tmp_path / "timers.log"))
    log = Announced()
    logger = logging.getLogger("chronowheel.worker")
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    try:
        serving = asyncio.ensure_future(worker._serve(engine, 5.0, ("127.0.0.1", 0), ("127.0.0.1", 0)))
        await log.running.wait()
        urls = [re.search(r"http://\S+", line) for line in log.lines if " on http://" in line]
        metrics, web = sorted(match[0] for match in urls if match is not None)[::-1]
        for url in (metrics, web + "api/dead"):
            assert await asyncio.to_thread(status_of, url) == 200
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's handler takes it, not the test process
        assert await serving == worker.DRAINED
    finally:
        logger.removeHandler(log)
    assert any(line.startswith("SIGTERM: stopping") for line in log.lines)
    assert REGISTRY.get_sample_value("chronowheel_timers_resident") is None  # the collector went with it


def test_jobs_on_a_damaged_journal_lists_what_comes_before_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "timers.log"
    asyncio.run(write_jobs(journal))
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte mid-log, with good records after it: damage, not a torn tail
    journal.write_bytes(bytes(data))
    assert main(["jobs", str(journal), "--json"]) == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["damage"]["path"] == str(journal.resolve())
    assert len(document["jobs"]) <= 4  # the records before the damage (the later retry and dead letter may be lost)
    assert "is damaged" in captured.err
    assert "only the jobs before it are listed" in captured.err


def test_worker_exits_1_when_the_engine_fails_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lockedapp.py").write_text(
        f"from chronowheel import Engine\nengine = Engine(journal={str(tmp_path / 'timers.log')!r})\n"
    )
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "timers.log.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another engine holds it
        try:
            assert main(["worker", "lockedapp:engine"]) == 1
        finally:
            sys.modules.pop("lockedapp", None)
    assert "chronowheel worker: JournalLocked" in capsys.readouterr().err
