"""The ``chronowheel`` command (also ``python -m chronowheel``): one module per subcommand.

Each module has ``configure(commands)``, which adds its parser, and a
``run(args)`` that returns the exit status; what a command needs beyond
the standard library (an extra) it imports when it runs.
"""

from __future__ import annotations

import argparse
import sys

from . import bench, db, inspect, jobs, worker

__all__ = ["main"]

_COMMANDS = (worker, inspect, jobs, db, bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chronowheel", description="chronowheel operator tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.configure(commands)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0] not in commands.choices and argv[0] not in ("-h", "--help")):
        if argv:
            print(f"chronowheel: unknown command {argv[0]!r}", file=sys.stderr)
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status
