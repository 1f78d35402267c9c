"""``python -m chronowheel``: operator tools.

``inspect PATH`` reports on a journal, read-only; ``db upgrade DSN`` brings a
cluster's database schema up to date (for operators who forbid DDL at run time).
"""

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
    db = commands.add_parser("db", help="cluster mode's database", description="Cluster mode's database.")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    db_upgrade = db_commands.add_parser(
        "upgrade",
        help="create or upgrade the cluster schema (safe while engines run)",
        description="Apply the cluster schema's missing migrations, under the advisory lock engines take too.",
    )
    db_upgrade.add_argument("dsn", metavar="DSN", help="an asyncpg connection string, as passed to Cluster(dsn)")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("inspect", "db", "-h", "--help"):
        if argv:
            print(f"python -m chronowheel: unknown command {argv[0]!r}", file=sys.stderr)
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command == "db":
        return _upgrade(args.dsn)

    from ._inspect import command

    status, out, err = command(args.path, records=args.records, as_json=args.json)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


def _upgrade(dsn: str) -> int:
    try:
        import asyncio

        import asyncpg
    except ImportError:
        print("python -m chronowheel db: needs asyncpg: pip install 'chronowheel[postgres]'", file=sys.stderr)
        return 2
    from ._cluster.schema import upgrade

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await upgrade(conn)
        finally:
            await conn.close()

    try:
        version = asyncio.run(run())
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        print(f"python -m chronowheel db upgrade: {exc}", file=sys.stderr)
        return 1
    print(f"cluster schema at version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
