"""The cluster's tables, versioned: each migration runs once, under an advisory lock, whoever starts first.

Many engines may start at once against a fresh database: the first takes
the transaction-scoped advisory lock and applies what is missing, the
others wait for it and find nothing left to do. ``python -m chronowheel db
upgrade DSN`` runs the same code for operators who forbid DDL at run time.
Tables are unqualified: they live in the connection's ``search_path``
(one schema per cluster, or per test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncpg

__all__ = ["MIGRATIONS", "VERSION", "upgrade"]

# (version, statements). Never edit a released migration: add the next one.
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            """CREATE TABLE cw_shard (
                 shard      int PRIMARY KEY,
                 owner      text,
                 token      bigint NOT NULL DEFAULT 0,   -- the fencing token: +1 at every acquisition
                 expires_at timestamptz
               ) WITH (fillfactor = 50)""",
            """CREATE TABLE cw_engine (
                 id      text PRIMARY KEY,
                 shards  int NOT NULL,                   -- what the engine was configured with
                 started timestamptz NOT NULL DEFAULT now(),
                 seen    timestamptz NOT NULL DEFAULT now()
               )""",
            """CREATE TABLE cw_job (
                 id     text PRIMARY KEY,                -- a run of a series: '<series id>:<nominal, µs>'
                 shard  int NOT NULL,
                 key    text,                            -- set while the key is reserved
                 due    float8 NOT NULL,                 -- POSIX seconds, the engine's wall clock
                 state  smallint NOT NULL DEFAULT 0,     -- 0 waiting, 1 claimed, 3 dead
                 series bool NOT NULL DEFAULT false,     -- a recurring job: it keeps its key when claimed
                 fence  bigint,                          -- the token it was last claimed under
                 claims int NOT NULL DEFAULT 0,          -- how often it was claimed: > 1 is a re-run
                 record bytea NOT NULL                   -- the journal's job record (orjson)
               ) WITH (fillfactor = 85)""",
            # No predicate on state anywhere: claims stay HOT updates, and the index does not bloat.
            "CREATE INDEX cw_job_due ON cw_job (shard, due)",
            "CREATE UNIQUE INDEX cw_job_key ON cw_job (key) WHERE key IS NOT NULL",
            "ALTER TABLE cw_job SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0)",
            # Written only by engines started with CHRONOWHEEL_CLUSTER_AUDIT=1 (the fault tests).
            """CREATE TABLE cw_audit (
                 at    timestamptz NOT NULL DEFAULT clock_timestamp(),
                 kind  text NOT NULL,                    -- acquire, claim, ack
                 owner text NOT NULL,
                 shard int NOT NULL,
                 token bigint NOT NULL,
                 id    text
               )""",
        ),
    ),
    (
        2,
        (
            # The database's incarnation: compared on every reconnect (sql.IDENTITY); a restore or a copy that
            # should not be taken for the same store is given a new one by hand.
            "CREATE TABLE cw_meta (incarnation text NOT NULL)",
            "INSERT INTO cw_meta SELECT md5(random()::text || clock_timestamp()::text)",
        ),
    ),
    (
        3,
        (
            # Finished jobs' outcomes (the journal's done records) until they expire: engine.result() anywhere.
            """CREATE TABLE cw_result (
                 id      text PRIMARY KEY,
                 shard   int NOT NULL,
                 expires float8 NOT NULL,                -- POSIX seconds, the engine's wall clock
                 record  bytea NOT NULL                  -- the journal's done record (orjson)
               )""",
            "CREATE INDEX cw_result_expires ON cw_result (expires)",
        ),
    ),
    (
        4,
        (
            # schedule(after=...): a child waits in state 5 (no claim, load or refill takes it) with one row
            # here per parent still to succeed; ``waited`` marks a parent with children (metadata-only: no rewrite).
            "ALTER TABLE cw_job ADD COLUMN waited bool NOT NULL DEFAULT false",
            """CREATE TABLE cw_after (
                 child  text NOT NULL,
                 parent text NOT NULL,
                 task   text NOT NULL,                   -- the parent's: the reason a cancelled child keeps
                 PRIMARY KEY (parent, child)
               )""",
            "CREATE INDEX cw_after_child ON cw_after (child)",
        ),
    ),
    (
        5,
        (
            # Two more paused states (no rewrite, no new column): 6, a series paused while its run goes on (still
            # claimed), and 7, a child paused while it waits for its parents. Code of version 4 knows neither (its
            # sweep would leave a 6 claimed, its parents' success a 7 waiting): the version keeps it from starting.
            """COMMENT ON COLUMN cw_job.state IS
                 '0 waiting, 1 claimed, 3 dead, 4 paused, 5 waiting for its parents (after=),'
                 ' 6 paused while claimed (a series whose run goes on), 7 paused while waiting for its parents'""",
        ),
    ),
)
VERSION: Final = MIGRATIONS[-1][0]

_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('chronowheel:' || current_schema()))"


async def upgrade(conn: asyncpg.Connection, shards: int | None = None) -> int:
    """Apply the missing migrations and create the ``shards`` rows (if given); returns the schema's version.

    Raises ``RuntimeError`` for a schema newer than this code, or for a
    cluster created with another shard count.
    """
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS cw_version (version int NOT NULL)")
        found = await conn.fetchval("SELECT max(version) FROM cw_version") or 0
        if found > VERSION:
            raise RuntimeError(f"cluster schema: the database is at version {found}, this code knows {VERSION}")
        for version, statements in MIGRATIONS:
            if version > found:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO cw_version VALUES ($1)", version)
        if shards is not None:
            have = await conn.fetchval("SELECT count(*) FROM cw_shard")
            if have == 0:
                await conn.execute("INSERT INTO cw_shard (shard) SELECT generate_series(0, $1::int - 1)", shards)
            elif have != shards:
                raise RuntimeError(
                    f"shards: this cluster's database has {have} shards, the engine was given shards={shards};"
                    " the shard count is fixed for the life of a cluster"
                )
    return VERSION
