"""Schema migrations: every change to the SQLite schemas, as numbered steps in one place.

Three schemas, each an ordered list of named steps:

- `pool`: the run's tables (`lionloop.stores.pool.Pool`),
- `cache`: the teacher-call cache (`lionloop.stores.cache.CallCache`),
- `batches`: a batch teacher's job ledger where it is kept outside a pool (the pool has it as a step).

By default both live in one file (the run's `pool.sqlite`); `teacher.cache_path` can put the cache
in a file of its own, shared by several runs. A writer opening a file applies the steps it has not
applied yet, in order, each in its own transaction together with the row recording it.

Applied steps are recorded in a `_migrations` table, one row per (schema, step), rather than in
`PRAGMA user_version`: one file can hold both schemas, each with its own history, and a single
integer cannot say which of two sequences it counts. The table also keeps when each step ran.

Every step is idempotent (`IF NOT EXISTS`, "add the column unless it is there"): files written
before this table existed already hold some or all of the steps' effects and get them recorded,
not redone. Steps never drop anything: a column or table an older lionloop wrote and this one no
longer uses (the pool's `meta` table) stays where it is.

Read-only connections cannot migrate. `read_as_current` lets them read an older file as if it
were migrated: each table that lacks a column a later step adds is shadowed by a TEMP view that
supplies the column's default, so no reader ever asks which version it holds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

TABLE = "_migrations"


@dataclass(frozen=True)
class Migration:
    """One named step of a schema's history."""

    name: str
    apply: Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class AddColumn(Migration):
    """A step that adds `column` to `table`; readers of older files see `default` in its place."""

    table: str = ""
    column: str = ""
    default: str = ""  # an SQL literal


def create(name: str, schema: str) -> Migration:
    """A step that creates tables and indexes (`IF NOT EXISTS`: a no-op where they exist)."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in schema.split(";"):
            if statement.strip():
                conn.execute(statement)

    return Migration(name, apply)


def add_column(name: str, table: str, column: str, type_: str, default: str) -> AddColumn:
    """A step that adds a NOT NULL column with a default (skipped where the column exists)."""

    def apply(conn: sqlite3.Connection) -> None:
        if column not in columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {type_} NOT NULL DEFAULT {default}")

    return AddColumn(name, apply, table, column, default)


# -- the pool ---------------------------------------------------------------------------------------

# The first release's tables, as it wrote them (its `meta` table, never read, is left out: pools
# that have it keep it).
POOL_TABLES = """
CREATE TABLE IF NOT EXISTS instructions(
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    input TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL,
    parent_id TEXT,
    round_born INTEGER NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'cache', 'eval')),
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS instructions_split ON instructions(split);
CREATE INDEX IF NOT EXISTS instructions_parent ON instructions(parent_id);
CREATE TABLE IF NOT EXISTS responses(
    instruction_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('teacher', 'student')),
    model TEXT NOT NULL,
    round INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (instruction_id, role, round)
);
CREATE TABLE IF NOT EXISTS verdicts(
    instruction_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    teacher_score REAL,
    student_score REAL,
    diff REAL,
    hard INTEGER,
    raw TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (instruction_id, round)
);
CREATE TABLE IF NOT EXISTS examples(
    id TEXT PRIMARY KEY,
    instruction_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    completion TEXT NOT NULL,
    generator TEXT NOT NULL,
    round INTEGER NOT NULL,
    weight REAL NOT NULL DEFAULT 1.0
);
CREATE INDEX IF NOT EXISTS examples_instruction ON examples(instruction_id);
CREATE TABLE IF NOT EXISTS candidates(
    round INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    generator TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    PRIMARY KEY (round, seq)
);
CREATE TABLE IF NOT EXISTS failures(
    round INTEGER NOT NULL,
    stage TEXT NOT NULL,
    item_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (round, stage, item_id)
);
CREATE TABLE IF NOT EXISTS rounds(
    round INTEGER PRIMARY KEY,
    started REAL,
    finished REAL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS stages(
    round INTEGER NOT NULL,
    stage TEXT NOT NULL,
    finished REAL NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (round, stage)
);
CREATE TABLE IF NOT EXISTS embeddings(
    instruction_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    vector BLOB NOT NULL
)
"""

BATCH_TABLES = """
CREATE TABLE IF NOT EXISTS teacher_batches(
    tag TEXT PRIMARY KEY,
    runner TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    batch_id TEXT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS teacher_batch_requests(
    custom_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (custom_id, tag)
)
"""

POOL: tuple[Migration, ...] = (
    create("m001_tables", POOL_TABLES),
    # Student roles: a training row may name the model it trains ('' = the main student).
    add_column("m002_examples_student", "examples", "student", "TEXT", "''"),
    # The FAISS index catches up on new vectors by rowid per model: count and max without a scan.
    create("m003_embeddings_model", "CREATE INDEX IF NOT EXISTS embeddings_model ON embeddings(model)"),
    # Batch teacher jobs (OpenAI Batch API, vllm run-batch): recorded before waiting on them, so a
    # resumed run polls the job it paid for instead of submitting it again.
    create("m004_teacher_batches", BATCH_TABLES),
    # A reasoning model's thinking before the answer in `text` ('' where it wrote none): the
    # teacher's always, the student's where it learns thinking; `lionloop pool show` shows it.
    add_column("m005_responses_thinking", "responses", "thinking", "TEXT", "''"),
)


# -- the call cache ---------------------------------------------------------------------------------

CACHE_TABLES = """
CREATE TABLE IF NOT EXISTS llm_cache(
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    usage TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS llm_cache_run ON llm_cache(run_id, round, stage)
"""

CACHE: tuple[Migration, ...] = (
    create("m001_llm_cache", CACHE_TABLES),
    # Calls paid again for a key already held (0 unless something is wrong).
    add_column("m002_llm_cache_repaid", "llm_cache", "repaid", "INTEGER", "0"),
)

# -- batch jobs outside a run's pool ---------------------------------------------------------------

# The pool's batch tables alone, for a file that records a batch teacher's jobs but is no pool
# (`lionloop evaluate --referee` keeps its paid calls and their jobs in the run's evaluate.sqlite).
BATCHES: tuple[Migration, ...] = (create("m001_teacher_batches", BATCH_TABLES),)

SCHEMAS: dict[str, tuple[Migration, ...]] = {"pool": POOL, "cache": CACHE, "batches": BATCHES}


# -- applying ---------------------------------------------------------------------------------------


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """The columns of `table` in the file's main schema ([] when there is no such table)."""
    return [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]


def applied(conn: sqlite3.Connection, schema: str) -> set[str]:
    """Names of the steps of `schema` recorded in the file (none before the first migration)."""
    if not columns(conn, TABLE):
        return set()
    return {r[0] for r in conn.execute(f"SELECT name FROM {TABLE} WHERE db = ?", (schema,))}


def migrate(conn: sqlite3.Connection, schema: str) -> list[str]:
    """Apply the steps of `schema` ('pool', 'cache' or 'batches') the file has not recorded; returns their names.

    `conn` must be a writer in autocommit mode (isolation_level=None). Each step runs in its own
    BEGIN IMMEDIATE transaction with the row recording it, and is checked again inside it: two
    processes opening one file at once apply each step once.
    """
    steps = SCHEMAS[schema]
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE}("
        " db TEXT NOT NULL, name TEXT NOT NULL, applied REAL NOT NULL, PRIMARY KEY (db, name))"
    )
    done = applied(conn, schema)
    ran: list[str] = []
    for step in steps:
        if step.name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(f"SELECT 1 FROM {TABLE} WHERE db = ? AND name = ?", (schema, step.name)).fetchone() is None:
                step.apply(conn)
                conn.execute(f"INSERT INTO {TABLE}(db, name, applied) VALUES (?, ?, ?)",
                             (schema, step.name, time.time()))
                ran.append(step.name)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return ran


# -- reading a file that was not migrated -----------------------------------------------------------


def missing_columns(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """Columns later steps add that the file's tables lack: {table: {column: default SQL}}.

    Tables the file does not have are left out (nothing to read there).
    """
    out: dict[str, dict[str, str]] = {}
    for steps in SCHEMAS.values():
        for step in steps:
            if not isinstance(step, AddColumn):
                continue
            have = columns(conn, step.table)
            if have and step.column not in have:
                out.setdefault(step.table, {})[step.column] = step.default
    return out


def read_as_current(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """Let a read-only connection read an older file with today's queries: each table missing a
    column is shadowed by a TEMP view (this connection only; the file is untouched) that adds the
    column with its default. Returns what was missing."""
    missing = missing_columns(conn)
    for table, cols in missing.items():
        extra = ", ".join(f"{default} AS {col}" for col, default in cols.items())
        conn.execute(f"CREATE TEMP VIEW IF NOT EXISTS {table} AS SELECT *, {extra} FROM main.{table}")
    return missing
