"""``chronowheel db upgrade DSN``: create or upgrade cluster mode's schema, for operators who forbid DDL at run time."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

__all__ = ["configure", "run"]


def configure(commands: Any) -> None:
    db = commands.add_parser("db", help="cluster mode's database", description="Cluster mode's database.")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="create or upgrade the cluster schema (safe while engines run)",
        description="Apply the cluster schema's missing migrations, under the advisory lock engines take too.",
    )
    upgrade.add_argument("dsn", metavar="DSN", help="an asyncpg connection string, as passed to Cluster(dsn)")
    upgrade.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import asyncpg
    except ImportError:
        print("chronowheel db: needs asyncpg: pip install 'chronowheel[postgres]'", file=sys.stderr)
        return 2
    from .._cluster.schema import upgrade

    async def apply() -> int:
        conn = await asyncpg.connect(args.dsn)
        try:
            return await upgrade(conn)
        finally:
            await conn.close()

    try:
        version = asyncio.run(apply())
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        print(f"chronowheel db upgrade: {exc}", file=sys.stderr)
        return 1
    print(f"cluster schema at version {version}")
    return 0
