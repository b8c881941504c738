"""Schema, migrations and statements of :class:`~xtasks.stores.postgres.PostgresStore`.

The rows hold what :mod:`~xtasks.stores._sql` encodes for SQLite (``encode_run``,
``decode_run``, ``encode_audit``, ``decode_audit``): times are fixed-width UTC ISO-8601
text, so text order is time order (the columns are ``COLLATE "C"``, byte order, whatever
the database's locale), and a field added to :class:`~xtasks.RunRecord` needs only a
migration here. What PostgreSQL adds: leases are ``float8`` Unix seconds of the *server's*
clock (``statement_timestamp()``), and every table lives in one PostgreSQL schema, named in
each statement (:class:`Statements` formats them once per store).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from .._feed import DURATION_BUCKETS
from . import _sql

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "RUN_ROW_KEYS", "Statements", "channel_name", "migrate"]

#: Schema migrations: ``MIGRATIONS[i]`` takes ``schema_version`` from ``i`` to ``i + 1``.
#: Append only; never edit a released entry. ``{s}`` is the store's schema, quoted.
MIGRATIONS: list[tuple[str, ...]] = [
    (  # v1: the whole schema of xtasks 0.1
        """CREATE TABLE {s}.claims (
            task text COLLATE "C" NOT NULL,
            fire_time text COLLATE "C" NOT NULL,
            replica text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (task, fire_time)
        )""",
        # seq: insertion order, the tie-break of history; id is the natural key.
        """CREATE TABLE {s}.runs (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL UNIQUE,
            task text COLLATE "C" NOT NULL,
            status text COLLATE "C" NOT NULL,
            cause text NOT NULL,
            scheduled_at text COLLATE "C" NOT NULL,
            started_at text COLLATE "C",
            finished_at text COLLATE "C",
            attempts integer NOT NULL DEFAULT 0,
            error_type text,
            error_message text,
            error_traceback text,
            reason text,
            result text,
            replica text NOT NULL DEFAULT '',
            lease_owner text,
            lease_expires float8
        )""",
        "CREATE INDEX runs_by_task ON {s}.runs (task, scheduled_at DESC, seq DESC)",
        "CREATE INDEX runs_by_time ON {s}.runs (scheduled_at DESC, seq DESC)",
        "CREATE INDEX runs_by_status ON {s}.runs (status)",
        # The reaper's scan: exactly the leased (live) rows, by expiry.
        "CREATE INDEX runs_by_lease ON {s}.runs (lease_expires) WHERE lease_owner IS NOT NULL",
        # claim_floor: claims at or before it were pruned and count as taken. change: the
        # number of the task's latest state change (change_task_state), NULL if none.
        """CREATE TABLE {s}.tasks (
            name text COLLATE "C" PRIMARY KEY,
            state text NOT NULL DEFAULT 'active',
            last_fire text COLLATE "C",
            consecutive_failures integer NOT NULL DEFAULT 0,
            alerting boolean NOT NULL DEFAULT false,
            anchor text COLLATE "C",
            claim_floor text COLLATE "C",
            change bigint
        )""",
        "CREATE INDEX tasks_by_change ON {s}.tasks (change) WHERE change IS NOT NULL",
        """CREATE TABLE {s}.audit (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL UNIQUE,
            at text COLLATE "C" NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            task text COLLATE "C" NOT NULL,
            outcome text NOT NULL,
            detail text
        )""",
        "CREATE INDEX audit_by_task ON {s}.audit (task, at DESC, seq DESC)",
        "CREATE INDEX audit_by_time ON {s}.audit (at DESC, seq DESC)",
    ),
    (  # v2: how the task was last defined, for replicas to spot a name defined two ways
        "ALTER TABLE {s}.tasks ADD COLUMN definition text",
    ),
    (  # v3: the failed attempts before a run's latest, as JSON text (NULL: none); rows
        # written before read back with none
        "ALTER TABLE {s}.runs ADD COLUMN earlier_attempts text",
    ),
    (  # v4: the executor a run's latest attempt went to, and the worker it reported;
        # rows written before read back with executor '' and no worker
        "ALTER TABLE {s}.runs ADD COLUMN executor text NOT NULL DEFAULT ''",
        "ALTER TABLE {s}.runs ADD COLUMN worker text",
    ),
    (  # v5: the fleet's change feed and run totals. run_feed's one row holds the latest
        # change number given to a run write and the highest of a run retention deleted;
        # every statement writing runs locks it first, so numbers are given in commit
        # order. Rows written before have change 0. run_totals counts each run at its
        # first final write.
        "ALTER TABLE {s}.runs ADD COLUMN change bigint NOT NULL DEFAULT 0",
        "CREATE INDEX runs_by_change ON {s}.runs (change) WHERE change > 0",
        "CREATE TABLE {s}.run_feed (latest bigint NOT NULL, pruned bigint NOT NULL)",
        "INSERT INTO {s}.run_feed VALUES (0, 0)",
        f"""CREATE TABLE {{s}}.run_totals (
            task text COLLATE "C" NOT NULL,
            status text COLLATE "C" NOT NULL,
            runs bigint NOT NULL,
            timed bigint NOT NULL,
            seconds float8 NOT NULL,
            {", ".join(f"b{i} bigint NOT NULL" for i in range(len(DURATION_BUCKETS) + 1))},
            PRIMARY KEY (task, status)
        )""",
    ),
]

#: Store time, Unix seconds of the server's clock when the statement started (every lease
#: statement is one statement of its own). Stable within the statement, unlike
#: clock_timestamp(), so the reaper's comparison is an index condition on runs_by_lease.
_NOW = "extract(epoch FROM statement_timestamp())"
_RUN_NAMES = _sql.RUN_COLUMNS.split(", ")
#: The keys of a row of :func:`encode_run_row`, in its order.
RUN_ROW_KEYS = (*_RUN_NAMES, "lease_owner")

# A batch arrives as one JSON array of rows keyed by column (json_populate_recordset
# types each value as the table's column does). Rows are inserted in batch order (the
# seq order of new runs). A live row's lease runs to server time + the TTL; a final one
# has none. A lost row is fenced: the WHERE skips it, so RETURNING leaves its id out.
_BUCKET_SUMS = ", ".join(
    f"count(*) FILTER (WHERE f.bucket = {i})" for i in range(len(DURATION_BUCKETS) + 1)
)
_TOTALS_UPDATE = ",\n    ".join(f"{c} = t.{c} + excluded.{c}" for c in _sql.TOTALS_COLUMNS)
_TOTALS_INSERT = f"""
INSERT INTO {{s}}.run_totals AS t (task, status, {", ".join(_sql.TOTALS_COLUMNS)})
"""

# The batch's change numbers come from run_feed, locked first (the counter CTE is read
# before any row is written), so numbers are given in commit order fleet-wide. prev is
# the rows as they were before the statement (its snapshot): a final record counts in
# run_totals when the row was missing or live, and the upsert took it (a lost row is
# fenced: the WHERE skips it, so RETURNING leaves its id out).
_SAVE_RUNS = """
WITH counter AS (
    UPDATE {s}.run_feed SET latest = latest + %(n)s RETURNING latest - %(n)s AS base
), prev AS (
    SELECT id, status FROM {s}.runs WHERE id = ANY(%(ids)s::text[])
), saved AS (
    INSERT INTO {s}.runs ({columns}, lease_owner, lease_expires, change)
    SELECT {columns}, lease_owner,
        CASE WHEN lease_owner IS NULL THEN NULL ELSE {now} + %(ttl)s END,
        counter.base + r.ordinality
    FROM json_populate_recordset(NULL::{s}.runs, %(rows)s::json) WITH ORDINALITY AS r,
        counter
    ORDER BY ordinality
    ON CONFLICT (id) DO UPDATE SET
        {updates},
        lease_owner = excluded.lease_owner,
        lease_expires = excluded.lease_expires,
        change = excluded.change
    WHERE runs.status <> 'lost'
    RETURNING id
), counted AS (
    {totals_insert}
    SELECT f.task, f.status, count(*), count(f.seconds), COALESCE(sum(f.seconds), 0),
        {bucket_sums}
    FROM json_to_recordset(%(finals)s::json)
        AS f(id text, task text, status text, seconds float8, bucket int)
    JOIN saved ON saved.id = f.id
    LEFT JOIN prev ON prev.id = f.id
    WHERE prev.status IS NULL OR prev.status IN ({live})
    GROUP BY f.task, f.status ORDER BY f.task, f.status
    ON CONFLICT (task, status) DO UPDATE SET
        {totals_update}
)
SELECT id FROM saved
"""

# Claims are inserted in (task, fire_time) order whatever the batch's order, so that
# concurrent batches take the unique index's locks in one order (no deadlock); a pair
# twice in a batch is inserted once. A claim at or below the task's floor counts as taken.
_CLAIM = """
WITH fires AS (
    SELECT DISTINCT task, fire_time FROM unnest(%(tasks)s::text[], %(times)s::text[])
        AS f(task, fire_time)
), won AS (
    INSERT INTO {s}.claims (task, fire_time, replica)
    SELECT f.task, f.fire_time, %(replica)s FROM fires f
    WHERE NOT EXISTS (
        SELECT 1 FROM {s}.tasks t WHERE t.name = f.task AND t.claim_floor >= f.fire_time)
    ORDER BY f.task, f.fire_time
    ON CONFLICT (task, fire_time) DO NOTHING
    RETURNING task, fire_time
), latest AS (
    INSERT INTO {s}.tasks AS t (name, last_fire)
    SELECT task, max(fire_time) FROM won GROUP BY task ORDER BY task
    ON CONFLICT (name) DO UPDATE SET last_fire = excluded.last_fire
    WHERE t.last_fire IS NULL OR t.last_fire < excluded.last_fire
)
SELECT task, fire_time FROM won
"""

_TASK_COLUMNS = "name, state, last_fire, consecutive_failures, alerting, anchor, definition"
# save_task: state only for a new row; last_fire never goes back (GREATEST skips NULL);
# the first anchor stays; a definition given replaces the stored one. In name order, for
# the same reason as claims.
_SAVE_TASKS = f"""
INSERT INTO {{s}}.tasks AS t ({_TASK_COLUMNS})
SELECT {_TASK_COLUMNS}
FROM json_populate_recordset(NULL::{{s}}.tasks, %(rows)s::json) ORDER BY name
ON CONFLICT (name) DO UPDATE SET
    last_fire = GREATEST(t.last_fire, excluded.last_fire),
    consecutive_failures = excluded.consecutive_failures,
    alerting = excluded.alerting,
    anchor = COALESCE(t.anchor, excluded.anchor),
    definition = COALESCE(excluded.definition, t.definition)
"""

# change_task_state, inside one transaction holding the store's change lock: the next
# number is one above every number made, and the state is written too.
_CHANGE_TASK = f"""
INSERT INTO {{s}}.tasks AS t ({_TASK_COLUMNS}, change)
VALUES (%(name)s, %(state)s, %(last_fire)s, %(consecutive_failures)s, %(alerting)s,
    %(anchor)s, %(definition)s, (SELECT COALESCE(max(change), 0) + 1 FROM {{s}}.tasks))
ON CONFLICT (name) DO UPDATE SET
    state = excluded.state,
    last_fire = GREATEST(t.last_fire, excluded.last_fire),
    consecutive_failures = excluded.consecutive_failures,
    alerting = excluded.alerting,
    anchor = COALESCE(t.anchor, excluded.anchor),
    definition = COALESCE(excluded.definition, t.definition),
    change = excluded.change
RETURNING change
"""

# One scan of the index, in one snapshot: numbers become visible in order, so the rows
# above `after` are every change made up to the highest of them.
_CHANGES = "SELECT name, state, change FROM {s}.tasks WHERE change > %(after)s"
_LATEST_CHANGE = "SELECT COALESCE(max(change), 0) FROM {s}.tasks"

_LOAD_TASKS = f"SELECT {_TASK_COLUMNS} FROM {{s}}.tasks WHERE name = ANY(%(names)s::text[])"

_RENEW = f"""
UPDATE {{s}}.runs SET lease_expires = {_NOW} + %(ttl)s
WHERE lease_owner = %(replica)s AND id = ANY(%(ids)s::text[])
RETURNING id
"""

# Each expired row is locked by one reaper; another skips it, and once the first commits
# the row no longer matches (lease_owner is NULL): each lost run is returned once.
# In a transaction that locked run_feed first (LOCK_FEED); its latest number is %(base)s.
_REAP = f"""
WITH expired AS (
    SELECT seq FROM {{s}}.runs
    WHERE lease_owner IS NOT NULL AND lease_expires < {_NOW}
    FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM expired
)
UPDATE {{s}}.runs AS r SET status = 'lost',
    reason = 'lost: its replica ' || r.lease_owner || ' went silent past its lease',
    lease_owner = NULL, lease_expires = NULL, change = %(base)s + numbered.n
FROM numbered WHERE r.seq = numbered.seq
RETURNING {", ".join(f"r.{c}" for c in _RUN_NAMES)}, r.change
"""

_LOCK_FEED = "SELECT latest FROM {s}.run_feed FOR UPDATE"
_SET_LATEST = "UPDATE {s}.run_feed SET latest = GREATEST(latest, %(latest)s)"
_SET_PRUNED = "UPDATE {s}.run_feed SET pruned = GREATEST(pruned, %(pruned)s)"
_ADD_TOTALS = f"""
{_TOTALS_INSERT}
SELECT * FROM json_populate_recordset(NULL::{{s}}.run_totals, %(totals)s::json)
ORDER BY task, status
ON CONFLICT (task, status) DO UPDATE SET
    {_TOTALS_UPDATE}
"""
_READ_TOTALS = f"SELECT task, status, {', '.join(_sql.TOTALS_COLUMNS)} FROM {{s}}.run_totals"
# The counters and the rows in one statement: one snapshot.
_RUN_CHANGES = f"""
SELECT f.latest, f.pruned, {", ".join(f"r.{c}" for c in _RUN_NAMES)}, r.change
FROM {{s}}.run_feed f LEFT JOIN LATERAL (
    SELECT {_sql.RUN_COLUMNS}, change FROM {{s}}.runs
    WHERE change > %(after)s AND change > 0 ORDER BY change LIMIT %(limit)s
) r ON true
ORDER BY r.change
"""

_GET_RUN = f"SELECT {_sql.RUN_COLUMNS} FROM {{s}}.runs WHERE id = %(id)s"

_ADD_AUDIT = f"""
INSERT INTO {{s}}.audit ({_sql.AUDIT_COLUMNS})
VALUES (%(id)s, %(at)s, %(actor)s, %(action)s, %(task)s, %(outcome)s, %(detail)s)
"""

# The newest max_runs_per_task finished runs of each task stay; live runs neither go nor
# count (as MemoryStore's bound).
_PRUNE_COUNT = f"""
DELETE FROM {{s}}.runs WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, row_number() OVER (
            PARTITION BY task ORDER BY scheduled_at DESC, seq DESC) AS n
        FROM {{s}}.runs WHERE status NOT IN ({_sql.LIVE})) AS ranked
    WHERE n > %(keep)s)
RETURNING change
"""

_PRUNE_AGE = f"""
DELETE FROM {{s}}.runs
WHERE status NOT IN ({_sql.LIVE}) AND COALESCE(finished_at, scheduled_at) < %(cutoff)s
RETURNING change
"""

_PRUNE_AUDIT_AGE = "DELETE FROM {s}.audit WHERE at < %(cutoff)s"

# Claims older than the horizon go; each task keeps the latest of them as its floor.
_PRUNE_CLAIMS = """
WITH gone AS (
    DELETE FROM {s}.claims WHERE fire_time < %(cutoff)s RETURNING task, fire_time
), floors AS (
    SELECT task, max(fire_time) AS floor FROM gone GROUP BY task
)
UPDATE {s}.tasks AS t SET claim_floor = GREATEST(t.claim_floor, floors.floor)
FROM floors WHERE t.name = floors.task
"""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store, formatted for one schema."""

    save_runs: str
    claim: str
    save_tasks: str
    change_task: str
    changes: str
    latest_change: str
    load_tasks: str
    renew: str
    reap: str
    get_run: str
    add_audit: str
    prune_count: str
    prune_age: str
    prune_audit_age: str
    prune_claims: str
    lock_feed: str
    set_latest: str
    set_pruned: str
    add_totals: str
    read_totals: str
    run_changes: str
    runs: str  #: the runs table, qualified
    audit: str  #: the audit table, qualified

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        s = sql.Identifier(schema).as_string(None)
        updates = ",\n    ".join(f"{c} = excluded.{c}" for c in _RUN_NAMES if c != "id")
        save_runs = _SAVE_RUNS.format(
            s=s,
            columns=_sql.RUN_COLUMNS,
            updates=updates,
            now=_NOW,
            totals_insert=_TOTALS_INSERT.replace("{s}", s),
            bucket_sums=_BUCKET_SUMS,
            live=_sql.LIVE,
            totals_update=_TOTALS_UPDATE,
        )
        texts = {
            "claim": _CLAIM,
            "save_tasks": _SAVE_TASKS,
            "change_task": _CHANGE_TASK,
            "changes": _CHANGES,
            "latest_change": _LATEST_CHANGE,
            "load_tasks": _LOAD_TASKS,
            "renew": _RENEW,
            "reap": _REAP,
            "get_run": _GET_RUN,
            "add_audit": _ADD_AUDIT,
            "prune_count": _PRUNE_COUNT,
            "prune_age": _PRUNE_AGE,
            "prune_audit_age": _PRUNE_AUDIT_AGE,
            "prune_claims": _PRUNE_CLAIMS,
            "lock_feed": _LOCK_FEED,
            "set_latest": _SET_LATEST,
            "set_pruned": _SET_PRUNED,
            "add_totals": _ADD_TOTALS,
            "read_totals": _READ_TOTALS,
            "run_changes": _RUN_CHANGES,
        }
        return cls(
            save_runs=save_runs,
            runs=f"{s}.runs",
            audit=f"{s}.audit",
            **{name: text.replace("{s}", s) for name, text in texts.items()},
        )


#: Seconds a migration waits for another replica's (a lock on a table, say).
_LOCK_TIMEOUT = 30.0


def migrate(conn: psycopg.Connection[Any], schema: str) -> int:
    """Create ``schema`` if missing and bring it to the latest version, in one transaction
    under an advisory lock: replicas opening together migrate it once.

    :return: the version found; one above ``len(MIGRATIONS)`` is left alone (the caller
        refuses it: a newer xtasks made it).
    """
    s = sql.Identifier(schema)
    target = len(MIGRATIONS)
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = {round(_LOCK_TIMEOUT * 1000)}")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}:migrate",))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if exists.fetchone() is None:  # IF NOT EXISTS alone would need CREATE on the database
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer NOT NULL)"
            ).format(s)
        )
        row = conn.execute(sql.SQL("SELECT version FROM {}.schema_version").format(s)).fetchone()
        version = 0 if row is None else int(row[0])
        if version >= target:
            return version
        quoted = s.as_string(None)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement.replace("{s}", quoted))
        if row is None:
            conn.execute(sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(s), (target,))
        else:
            conn.execute(sql.SQL("UPDATE {}.schema_version SET version = %s").format(s), (target,))
    return version


def channel_name(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel of the state changes of ``schema``'s store.

    A channel name is an identifier (at most 63 bytes): a long schema name is hashed.
    """
    name = f"xtasks_changes:{schema}"
    if len(name.encode()) > 63:
        name = "xtasks_changes:" + hashlib.sha256(schema.encode()).hexdigest()[:40]
    return name
