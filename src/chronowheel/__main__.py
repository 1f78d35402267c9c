"""``python -m chronowheel``: operator tools. ``inspect PATH`` reports on a journal, read-only."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chronowheel", description="chronowheel operator tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    inspect = commands.add_parser(
        "inspect",
        help="report a journal's files, records, live jobs and damage (reads only)",
        description="Report what recovery would find in a journal, without changing it. Exit status: 0 if"
        " recovery would succeed, 1 if it would raise JournalCorrupt, 2 for usage errors or no journal.",
    )
    inspect.add_argument("path", metavar="PATH", help="the journal, as passed to Engine(journal=...)")
    inspect.add_argument("--records", action="store_true", help="also list every record")
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("inspect", "-h", "--help"):
        if argv:
            print(f"python -m chronowheel: unknown command {argv[0]!r}", file=sys.stderr)
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)

    from ._inspect import command

    status, out, err = command(args.path, records=args.records, as_json=args.json)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


if __name__ == "__main__":
    sys.exit(main())
