"""``chronowheel bench``: the timer benchmark (``bench/bench_timers.py``) with progress bars, and a plot.

Each contender runs in a child process per N, as ``bench_timers`` does; the
ratio table is its own. ``--plot`` draws cost per operation and bytes per
timer against N (extra ``bench``: rich, matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

__all__ = ["configure", "plot", "run"]

# What the plot shows, per contender: (title, figures -> value at N).
Figure = Callable[[dict[str, Any]], float]
_PANELS: Final[tuple[tuple[str, str, Figure], ...]] = (
    ("insert (call_later)", "ns per operation", lambda r: r["insert"] * 1e9),
    ("cancel", "ns per operation", lambda r: r["cancel"] * 1e9),
    ("reschedule", "ns per operation", lambda r: r["reschedule"] * 1e9),
    ("fire", "ns per timer", lambda r: r["fire"] * 1e9),
    ("memory", "RSS bytes per timer", lambda r: r["rss_per_timer"]),
)


def configure(commands: Any) -> None:
    parser = commands.add_parser(
        "bench",
        help="benchmark timers against asyncio and uvloop (extra bench); --plot draws cost against N",
        description="Run bench/bench_timers.py (from a source checkout) for each N: chronowheel native and pure,"
        " asyncio and uvloop, each in its own process, and print the ratio table.",
    )
    parser.add_argument("--n", default="100000,1000000", metavar="N,N,...", help="resident timers (100000,1000000)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw cost per operation and bytes per timer vs N")
    parser.set_defaults(run=run)


def _bench_module() -> ModuleType | None:
    """``bench/bench_timers.py`` of the source checkout this package is installed from (editable), if any."""
    path = Path(os.environ.get("CHRONOWHEEL_BENCH", Path(__file__).resolve().parents[3] / "bench/bench_timers.py"))
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("bench_timers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(n < 1000 for n in sizes):  # fewer: timings too short to divide by
        raise ValueError(f"--n must be timer counts of at least 1000, separated by commas, got {text!r}")
    return sorted(set(sizes))


def run(args: argparse.Namespace) -> int:
    try:
        sizes = _sizes(args.n)
    except ValueError as exc:
        print(f"chronowheel bench: {exc}", file=sys.stderr)
        return 2
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if args.plot is not None:
            import matplotlib
    except ImportError:
        print("chronowheel bench: needs the bench extra: pip install 'chronowheel[bench]'", file=sys.stderr)
        return 2
    bench = _bench_module()
    if bench is None:
        print("chronowheel bench: runs from a source checkout (bench/bench_timers.py not found)", file=sys.stderr)
        return 2
    contenders: list[str] = bench.CONTENDERS
    results: dict[int, dict[str, dict[str, Any]]] = {n: {} for n in sizes}
    columns = (TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        bars = {name: progress.add_task(name, total=len(sizes)) for name in contenders}
        for n in sizes:
            for name in contenders:
                progress.update(bars[name], description=f"{name} N={n:,}")
                try:
                    results[n][name] = bench.run(name, n)  # in a child process of its own
                except RuntimeError as exc:  # that contender failed (or is not built): the others go on
                    progress.console.print(f"{name} at N={n:,}: {exc}")
                progress.update(bars[name], advance=1, description=name)
    for n in sizes:
        bench.report(n, results[n])
    if args.plot is not None:
        matplotlib.use("Agg")
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


def plot(results: dict[int, dict[str, dict[str, Any]]], path: str) -> None:
    """Cost per operation and bytes per timer against N, one line per contender, both axes logarithmic."""
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    contenders = list(dict.fromkeys(name for n in sizes for name in results[n]))
    figure, grid = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    axes = list(grid.flat)
    axes.pop().set_visible(False)  # five panels on a grid of six
    for axis, (title, unit, value) in zip(axes, _PANELS, strict=True):
        for name in contenders:
            points = [(n, value(results[n][name])) for n in sizes if name in results[n]]
            axis.plot([n for n, _ in points], [v for _, v in points], marker="o", label=name)
        axis.set(title=title, xlabel="resident timers N", ylabel=unit, xscale="log", yscale="log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle("chronowheel against asyncio call_later: cost as N grows (lower is better)")
    with contextlib.redirect_stdout(io.StringIO()):
        figure.savefig(path, dpi=100)
    plt.close(figure)
