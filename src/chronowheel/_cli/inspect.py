"""``chronowheel inspect PATH``: what recovery would find in a journal, read-only (``_inspect``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["configure", "run"]


def configure(commands: Any) -> None:
    parser = commands.add_parser(
        "inspect",
        help="report a journal's files, records, live jobs and damage (reads only)",
        description="Report what recovery would find in a journal, without changing it. Exit status: 0 if"
        " recovery would succeed, 1 if it would raise JournalCorrupt, 2 for usage errors or no journal.",
    )
    parser.add_argument("path", metavar="PATH", help="the journal, as passed to Engine(journal=...)")
    parser.add_argument("--records", action="store_true", help="also list every record")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._inspect import command

    status, out, err = command(args.path, records=args.records, as_json=args.json)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status
