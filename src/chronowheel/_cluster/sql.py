"""Every statement the cluster store sends, in one place (PostgreSQL 12+; arrays in, arrays out).

Each takes whole batches as arrays (``unnest``), so a loop turn's changes
cost one statement per kind, whatever their number. Every write that an
owner makes to a claimed row is fenced: it matches only while the row was
claimed under the token the engine holds for its shard, and that token is
still the shard's.
"""

from __future__ import annotations

from typing import Final

__all__: list[str] = []  # the module's constants are its API; `sql.NAME`

# -- engines and leases ---------------------------------------------------------------------------------

HEARTBEAT: Final = """
INSERT INTO cw_engine (id, shards) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET seen = now()
"""
LIVE_ENGINES: Final = "SELECT id FROM cw_engine WHERE seen > now() - make_interval(secs => $1)"
FORGET_ENGINE: Final = "DELETE FROM cw_engine WHERE id = $1"

# Free or expired shards among $2; the previous owner tells a takeover from a first acquisition. With $4, also
# the shards this engine's id still owns in the database (after a change of server: their tokens are reissued).
# SKIP LOCKED: an acquisition never waits for a row lock, so it cannot be part of a deadlock.
ACQUIRE: Final = """
WITH free AS (
  SELECT shard, owner FROM cw_shard
  WHERE shard = ANY($2::int[]) AND (owner IS NULL OR expires_at < now() OR ($4 AND owner = $1))
  FOR UPDATE SKIP LOCKED
)
UPDATE cw_shard s SET owner = $1, token = s.token + 1, expires_at = now() + make_interval(secs => $3)
FROM free WHERE s.shard = free.shard
RETURNING s.shard, s.token, free.owner AS previous
"""
# A claimed row given back waits again (0), or stays paused (4) if it was paused while claimed (6: a series
# whose run went on).
_UNCLAIMED: Final = "CASE j.state WHEN 6 THEN 4 ELSE 0 END"
# Rows claimed under an older token of a won shard: their owner lost them mid-run. Back to waiting. Rows locked
# by another transaction (a stale owner's ack or outcome in flight) are skipped, never waited for, and their
# shards returned (``left``), to be swept again at the next lease round: the sweep cannot deadlock.
SWEEP_ORPHANS: Final = f"""
WITH found AS (
  SELECT j.id, j.shard FROM cw_job j JOIN unnest($1::int[], $2::bigint[]) w(shard, token)
    ON j.shard = w.shard AND j.state IN (1, 6) AND j.fence < w.token
), taken AS (
  SELECT j.id FROM cw_job j JOIN unnest($1::int[], $2::bigint[]) w(shard, token)
    ON j.shard = w.shard AND j.state IN (1, 6) AND j.fence < w.token
  FOR UPDATE OF j SKIP LOCKED
), swept AS (
  UPDATE cw_job j SET state = {_UNCLAIMED} FROM taken WHERE j.id = taken.id RETURNING j.id
)
SELECT ARRAY(SELECT DISTINCT shard FROM found WHERE id NOT IN (SELECT id FROM swept)) AS left
"""
# Shard rows are locked in shard order, by one statement in each transaction that locks any (the renew, the
# release, a flush's claim, FOR SHARE): two of them never wait for each other in a cycle.
RENEW: Final = """
UPDATE cw_shard s SET expires_at = now() + make_interval(secs => $2)
FROM (
  SELECT s.shard FROM cw_shard s JOIN unnest($3::int[], $4::bigint[]) h(shard, token)
    ON s.shard = h.shard AND s.token = h.token
  WHERE s.owner = $1 AND s.expires_at > now()
  ORDER BY s.shard FOR UPDATE OF s
) h
WHERE s.shard = h.shard
RETURNING s.shard
"""
# A graceful hand-over: jobs claimed and never finished go back to waiting, then the lease ends now. A row
# locked by another transaction (this engine's ack of it in flight) is skipped: acked, it is gone; otherwise
# it stays claimed under the old token and the next owner's sweep gives it back.
UNCLAIM: Final = f"""
UPDATE cw_job j SET state = {_UNCLAIMED}
FROM (
  SELECT j.id FROM cw_job j JOIN unnest($1::int[], $2::bigint[]) h(shard, token)
    ON j.shard = h.shard AND j.state IN (1, 6) AND j.fence = h.token
  FOR UPDATE OF j SKIP LOCKED
) u
WHERE j.id = u.id
"""
# Jobs this engine claimed under its current token and never started (stopped by the local guard): waiting
# again, their claim not counted.
UNCLAIM_IDS: Final = f"""
UPDATE cw_job j SET state = {_UNCLAIMED}, claims = j.claims - 1
FROM unnest($1::text[], $2::int[], $3::bigint[]) u(id, shard, fence)
WHERE j.id = u.id AND j.shard = u.shard AND j.state IN (1, 6) AND j.fence = u.fence
"""
RELEASE: Final = """
UPDATE cw_shard s SET owner = NULL, expires_at = now()
FROM (
  SELECT s.shard FROM cw_shard s JOIN unnest($2::int[], $3::bigint[]) h(shard, token)
    ON s.shard = h.shard AND s.token = h.token
  WHERE s.owner = $1
  ORDER BY s.shard FOR UPDATE OF s
) h
WHERE s.shard = h.shard
"""
# This server's identity, as seen by every new connection and every lease round: a random row written when
# the schema was made, and when the server started. Either changing means the database may have gone back in
# time (a restart that lost commits, a failover to an asynchronous replica, a restore): tokens may be reissued.
IDENTITY: Final = "SELECT (SELECT incarnation FROM cw_meta) || ' ' || pg_postmaster_start_time()::text"

# -- loading a shard's near future ----------------------------------------------------------------------

LOAD: Final = """
SELECT id, shard, due, state, record FROM cw_job
WHERE shard = ANY($1::int[]) AND due <= $2 AND state = 0
"""
LOAD_DEAD: Final = "SELECT id, shard, due, state, record FROM cw_job WHERE shard = ANY($1::int[]) AND state = 3"
LOAD_IDS: Final = "SELECT id, shard, due, state, record FROM cw_job WHERE id = ANY($1::text[]) AND state = 0"

# -- changes ----------------------------------------------------------------------------------------------

CANCEL: Final = "DELETE FROM cw_job WHERE id = ANY($1::text[]) RETURNING id, shard, due, waited"
CANCEL_KEY: Final = (
    "DELETE FROM cw_job WHERE key = $1 AND state NOT IN (1, 6) RETURNING id, shard, due, state, record, waited"
)
MOVE: Final = """
UPDATE cw_job j SET due = m.due FROM unnest($1::text[], $2::float8[]) m(id, due)
WHERE j.id = m.id AND j.state IN (0, 4, 5, 7)
RETURNING j.id, j.shard, j.due
"""
# Paused: the claim, the loads and the refill take only waiting rows (0), so a paused row never fires. Each
# state that can be paused has its paused twin, which resume turns back: waiting (0) and paused (4), a series
# claimed while its run goes on (1) and paused so (6: its run's end stores it paused, not due), a child waiting
# for its parents (5) and paused so (7: its parents' success leaves it paused, 4). The record keeps the job's
# own state, for when it waits again.
_PAUSED: Final = "CASE state WHEN 0 THEN 4 WHEN 1 THEN 6 ELSE 7 END"
_RESUMED: Final = "CASE state WHEN 4 THEN 0 WHEN 6 THEN 1 ELSE 5 END"
PAUSE: Final = f"""
UPDATE cw_job SET state = {_PAUSED} WHERE id = ANY($1::text[]) AND state IN (0, 5) RETURNING id, shard, state
"""
RESUME: Final = f"""
UPDATE cw_job SET state = {_RESUMED} WHERE id = ANY($1::text[]) AND state IN (4, 7) RETURNING id, shard, due, state
"""
# A key is kept by a claimed row only if it is a series' (a one-shot job gives its key back at its claim).
PAUSE_KEY: Final = f"""
UPDATE cw_job SET state = {_PAUSED} WHERE key = $1 AND (state IN (0, 5) OR state = 1 AND series)
RETURNING id, shard, state
"""
RESUME_KEY: Final = f"""
UPDATE cw_job SET state = {_RESUMED} WHERE key = $1 AND state IN (4, 6, 7) RETURNING id, shard, state
"""
MOVE_KEY: Final = "UPDATE cw_job SET due = $2 WHERE key = $1 AND state IN (0, 4, 5, 7) RETURNING id, shard, due"

# New jobs. A taken key is a conflict on the unique index: "error" and "keep" insert nothing (the ids not
# returned), "replace" takes the key over with the new job.
_NEW_ROWS: Final = (
    "FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::bool[], $6::bytea[])"
    " n(id, shard, key, due, series, record)"
)
INSERT: Final = f"""
INSERT INTO cw_job (id, shard, key, due, series, record)
SELECT n.id, n.shard, n.key, n.due, n.series, n.record {_NEW_ROWS}
ON CONFLICT DO NOTHING
RETURNING id
"""
INSERT_REPLACE: Final = f"""
INSERT INTO cw_job (id, shard, key, due, series, record)
SELECT n.id, n.shard, n.key, n.due, n.series, n.record {_NEW_ROWS}
ON CONFLICT (key) WHERE key IS NOT NULL
DO UPDATE SET id = EXCLUDED.id, shard = EXCLUDED.shard, due = EXCLUDED.due, record = EXCLUDED.record,
              series = EXCLUDED.series, state = 0, fence = NULL, claims = 0, waited = false
RETURNING id
"""
# The jobs a replace takes the keys of, locked (in key order) before it: each ends cancelled, and those with
# children (``waited``) take them with it.
TAKEN: Final = """
SELECT id, shard, key, due, state, waited, record FROM cw_job WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE
"""
# A redriven dead job (the row is there, dead) or one the store no longer has: waiting again.
PUT: Final = f"""
INSERT INTO cw_job (id, shard, key, due, series, record)
SELECT n.id, n.shard, n.key, n.due, n.series, n.record {_NEW_ROWS}
ON CONFLICT (id) DO UPDATE SET due = EXCLUDED.due, record = EXCLUDED.record, key = EXCLUDED.key, state = 0
RETURNING id
"""
KEPT: Final = "SELECT id, shard, due, state, record FROM cw_job WHERE key = $1"
GET_KEY: Final = "SELECT id, shard, due, state, record FROM cw_job WHERE key = $1 AND state <> 3"
COUNT: Final = "SELECT count(*) FROM cw_job WHERE state <> 3"

# A series' runs go in already claimed, under the shard's current token (the fence); a run of the same
# series and nominal time is the same row, so two owners never make two runs of one period.
INSERT_RUNS: Final = """
INSERT INTO cw_job (id, shard, due, state, fence, claims, record)
SELECT n.id, n.shard, n.due, 1, n.fence, 1, n.record
FROM unnest($2::text[], $3::int[], $4::float8[], $5::bigint[], $6::bytea[]) n(id, shard, due, fence, record)
JOIN cw_shard s ON s.shard = n.shard AND s.token = n.fence AND s.owner = $1
ON CONFLICT DO NOTHING
RETURNING id
"""

# -- the claimed rows' outcomes, fenced ---------------------------------------------------------------

# Each row comes with its shard: the shard rows join in memory, then one primary-key look-up per job (a join
# on the token alone, or an `id = ANY(...)` filter, made PostgreSQL compare every row with every id).
_FENCED: Final = "j.id = o.id AND j.shard = o.shard AND j.state = 1 AND j.fence = o.fence"
_FENCED_OR_PAUSED: Final = "j.id = o.id AND j.shard = o.shard AND j.state IN (1, 6) AND j.fence = o.fence"
_HELD: Final = "JOIN cw_shard s ON s.shard = o.shard AND s.token = o.fence AND s.owner = $1"
# A retry (0, waiting), a dead letter (3), a fixed-delay series between runs (1), a series filed at its
# next run (0, and its key kept), a paused series whose run ended (4). A row paused while claimed (6) stays
# paused: filed at its next run, it is stored paused there (4). A series this engine paused whose row was
# resumed meanwhile (1) waits for its next run (0).
SETTLE: Final = f"""
UPDATE cw_job j SET due = o.due, record = o.record,
                    state = CASE WHEN j.state = 6 AND o.state = 0 THEN 4 WHEN j.state = 6 AND o.state = 1 THEN 6
                                 WHEN j.state = 1 AND o.state = 4 THEN 0 ELSE o.state END
FROM (SELECT o.* FROM unnest($2::text[], $7::int[], $3::bigint[], $4::smallint[], $5::float8[], $6::bytea[])
        o(id, shard, fence, state, due, record) {_HELD}) o
WHERE {_FENCED_OR_PAUSED}
RETURNING j.id, o.fence, j.waited, j.state
"""
# A series this engine paused, or resumed, while its run goes on: claimed (1) and paused so (6), and back.
PAUSE_CLAIMED: Final = f"""
UPDATE cw_job j SET state = 6
FROM (SELECT o.* FROM unnest($2::text[], $3::int[], $4::bigint[]) o(id, shard, fence) {_HELD}) o
WHERE {_FENCED}
"""
RESUME_CLAIMED: Final = f"""
UPDATE cw_job j SET state = 1
FROM (SELECT o.* FROM unnest($2::text[], $3::int[], $4::bigint[]) o(id, shard, fence) {_HELD}) o
WHERE j.id = o.id AND j.shard = o.shard AND j.state = 6 AND j.fence = o.fence
"""
ACK: Final = f"""
DELETE FROM cw_job j
USING (SELECT o.* FROM unnest($2::text[], $4::int[], $3::bigint[]) o(id, shard, fence) {_HELD}) o
WHERE {_FENCED}
RETURNING j.id, j.shard, j.fence, j.waited
"""
# The fault tests' audit trail (CHRONOWHEEL_CLUSTER_AUDIT=1), written in the transaction of what it records.
AUDIT: Final = """
INSERT INTO cw_audit (kind, owner, shard, token, id)
SELECT $1, $2, s, t, i FROM unnest($3::int[], $4::bigint[], $5::text[]) x(s, t, i)
"""

# -- the claim ------------------------------------------------------------------------------------------

# The fence: the shard's current token, an unexpired lease on the database's clock, FOR SHARE so that an
# acquisition waits for the claims in flight. One statement per flush, whatever the number of pools that fired:
# a second claim in the same transaction would lock its shards after the first one's, out of shard order. Each
# job comes with the token it is claimed under ($7): a shard re-acquired between two firings has two. A one-shot
# job gives its key back at its claim; a series keeps it. Not due yet by the engine's clock ($5): it was moved,
# and the claim leaves it alone.
CLAIM: Final = """
WITH sh AS (
  SELECT s.shard, s.token FROM cw_shard s
  JOIN unnest($2::int[], $3::bigint[]) m(shard, token) ON m.shard = s.shard AND m.token = s.token
  WHERE s.owner = $1 AND s.expires_at > now()
  ORDER BY s.shard FOR SHARE OF s
), claimed AS (
  UPDATE cw_job j SET state = 1, fence = c.token, claims = j.claims + 1,
                      key = CASE WHEN j.series THEN j.key END
  FROM (SELECT c.id, c.shard, c.token FROM unnest($4::text[], $6::int[], $7::bigint[]) c(id, shard, token)
        JOIN sh USING (shard, token)) c
  WHERE j.id = c.id AND j.shard = c.shard AND j.state = 0 AND j.due <= $5
  RETURNING j.id, j.fence, j.claims
)
SELECT h.*, c.*
FROM (SELECT coalesce(array_agg(shard), '{}') AS shards, coalesce(array_agg(token), '{}') AS tokens FROM sh) h,
     (SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(fence), '{}') AS fences,
             count(*) FILTER (WHERE claims > 1) AS reruns FROM claimed) c
"""

# -- the transactional ack (effectively-once) ---------------------------------------------------------

ACK_ONE: Final = """
DELETE FROM cw_job j USING cw_shard s
WHERE j.id = $2 AND j.state = 1 AND j.fence = $3 AND s.shard = j.shard AND s.token = $3 AND s.owner = $1
RETURNING j.waited
"""

NOTIFY: Final = "SELECT pg_notify($1, $2)"

# -- finished jobs' outcomes (results.py) ---------------------------------------------------------------

# The outcomes of the jobs this flush ended (the acks the fence let through, the cancellations).
KEEP: Final = """
INSERT INTO cw_result (id, shard, expires, record)
SELECT * FROM unnest($1::text[], $2::int[], $3::float8[], $4::bytea[])
ON CONFLICT (id) DO UPDATE SET shard = EXCLUDED.shard, expires = EXCLUDED.expires, record = EXCLUDED.record
"""
# What ``engine.result()`` looks at: the kept outcome, else the job's row (waiting, running or dead), else nothing.
LOOK: Final = """
SELECT r.record AS done, j.state, j.shard, CASE WHEN j.state = 3 THEN j.record END AS dead
FROM (SELECT) one
LEFT JOIN cw_result r ON r.id = $1 AND r.expires > $2
LEFT JOIN cw_job j ON j.id = $1
"""
# An owner's lease round: a bounded batch of its shards' expired outcomes.
PURGE: Final = """
DELETE FROM cw_result WHERE id = ANY(ARRAY(
  SELECT id FROM cw_result WHERE expires <= $2 AND shard = ANY($1::int[]) ORDER BY expires LIMIT $3
))
"""

# ``engine.cluster.jobs()`` (queries.py) and ``chronowheel jobs DSN``: one page by (due, id) past a cursor, over
# the live jobs and the kept outcomes of finished ones; filters by state ($1), task ($2), key prefix ($3). The
# state a row says beats its record's: 1 claimed (running), 3 dead, 4, 6 and 7 paused.
PAGE: Final = """
WITH listed AS (
  SELECT j.id, j.due, j.state AS row_state, false AS finished, j.record,
         CASE WHEN j.state = 1 THEN 'running' WHEN j.state = 3 THEN 'dead' WHEN j.state IN (4, 6, 7) THEN 'paused'
              ELSE d.doc ->> 'state' END
           AS state,
         d.doc ->> 'task' AS task, d.doc ->> 'key' AS key
  FROM cw_job j, LATERAL (SELECT convert_from(j.record, 'UTF8')::jsonb AS doc) d
  UNION ALL
  SELECT r.id, (d.doc ->> 'due')::float8, NULL, true, r.record, d.doc ->> 'state', d.doc ->> 'task', d.doc ->> 'key'
  FROM cw_result r, LATERAL (SELECT convert_from(r.record, 'UTF8')::jsonb AS doc) d
  WHERE r.expires > $6
)
SELECT id, due, row_state, finished, record FROM listed
WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR task = $2)
  AND ($3::text IS NULL OR starts_with(key, $3)) AND (due, id) > ($4::float8, $5::text)
ORDER BY due, id
LIMIT $7
"""

# -- jobs after others (dependencies.py): a child waits in state 5 with one cw_after row per parent ------------

# The parents of new children, locked (an end that races the check waits for its commit), and marked: the
# statements that end jobs return ``waited``, and only those with children cost a look at cw_after.
WAIT_FOR: Final = """
UPDATE cw_job SET waited = true WHERE id = ANY($1::text[])
RETURNING id, state, series OR convert_from(record, 'UTF8')::jsonb ? 'parent' AS recurring,
          convert_from(record, 'UTF8')::jsonb ->> 'task' AS task
"""
# How parents no longer in cw_job ended, while their outcome is kept.
ENDED: Final = """
SELECT id, convert_from(record, 'UTF8')::jsonb ->> 'state' AS state FROM cw_result
WHERE id = ANY($1::text[]) AND expires > $2
"""
# Children's edges (child, parent, the parent's task), and the children held out of every claim.
HOLD: Final = """
WITH edges AS (
  INSERT INTO cw_after (child, parent, task) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
  ON CONFLICT DO NOTHING
  RETURNING child
)
UPDATE cw_job SET state = 5 WHERE id IN (SELECT child FROM edges)
"""
# Parents that succeeded: their edges go, and their children are locked (in id order: no deadlock), so that
# RELEASE_CHILDREN, a statement of its own (a snapshot taken once the locks are held), sees the edges that
# another engine's transaction struck off meanwhile.
STRIKE_OFF: Final = """
WITH edges AS (DELETE FROM cw_after WHERE parent = ANY($1::text[]) RETURNING child)
SELECT id FROM cw_job WHERE id IN (SELECT child FROM edges) AND state IN (5, 7) ORDER BY id FOR UPDATE
"""
# A child paused while it waited (7) is left paused (4): it fires once resumed.
RELEASE_CHILDREN: Final = """
UPDATE cw_job j SET state = CASE j.state WHEN 7 THEN 4 ELSE 0 END WHERE j.id = ANY($1::text[]) AND j.state IN (5, 7)
  AND NOT EXISTS (SELECT FROM cw_after a WHERE a.child = j.id)
RETURNING j.id, j.shard, j.state
"""
# Parents that ended dead or cancelled: their waiting children (paused or not) are deleted (cancelled), with the
# parent and its task each was cancelled for, and the children's edges to their other parents go too.
CANCEL_CHILDREN: Final = """
WITH edges AS (DELETE FROM cw_after WHERE parent = ANY($1::text[]) RETURNING child, parent, task),
gone AS (
  DELETE FROM cw_job j
  USING (SELECT DISTINCT ON (child) child, parent, task FROM edges ORDER BY child, parent) e
  WHERE j.id = e.child AND j.state IN (5, 7)
  RETURNING j.id, j.shard, j.record, e.parent, e.task
), rest AS (
  DELETE FROM cw_after a USING gone g WHERE a.child = g.id AND NOT a.parent = ANY($1::text[])
)
SELECT * FROM gone
"""
