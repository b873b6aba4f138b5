"""Where PostgreSQL and SQLite differ, in one small class each.

The differences are: how a transaction takes its locks (row locks with ``SELECT ... FOR
UPDATE`` and an advisory lock on PostgreSQL; on SQLite ``BEGIN IMMEDIATE``, whose lock is
the whole database and where SQLAlchemy silently drops ``FOR UPDATE``), ``SKIP LOCKED``
for sweeps, the dialect's ``INSERT ... ON CONFLICT DO NOTHING``, and connection setup.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, TypeAlias

from sqlalchemy import Engine, Insert, Select, Table, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url

__all__ = [
    "WRITE_OPTION",
    "AnySelect",
    "PostgresDialect",
    "SqlDialect",
    "SqliteDialect",
    "dialect_for",
    "normalize_url",
]

#: A select of any columns (Select is generic over its column types).
AnySelect: TypeAlias = Select[*tuple[Any, ...]]

#: Connection execution option that marks a transaction as a writer (BEGIN IMMEDIATE).
WRITE_OPTION = "cw_write"


#: The key of the advisory lock that serializes claims of one step of one run
#: (``num_workers``), followed by ``<run_id>:<step>`` (both claim paths use it).
CLAIM_LOCK_PREFIX = "cw-claim:"


class SqlDialect:
    """The PostgreSQL behaviour; :class:`SqliteDialect` overrides what differs."""

    name = "postgresql"

    def engine_options(self, busy_timeout_s: float) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        # lock_timeout gives busy_timeout_s the meaning it has on SQLite: the longest wait
        # for a run's lock. No pool_pre_ping: see Database.begin for dropped connections.
        lock_timeout_ms = max(1, round(busy_timeout_s * 1000))
        return {
            "connect_args": {
                "connect_timeout": 10,
                "options": f"-c lock_timeout={lock_timeout_ms}",
            }
        }

    def install(self, engine: Engine) -> None:
        """Attach event hooks to a new engine."""

    def lock_run(self, stmt: AnySelect) -> AnySelect:
        """Make ``stmt`` (a select of the run row) take the row's write lock."""
        return stmt.with_for_update()

    def lock_delivery(self, stmt: AnySelect) -> AnySelect:
        """Make a claim's read of a delivery row lock it (conflicts with :meth:`hold_fence`)."""
        return stmt.with_for_update()

    def hold_fence(self, stmt: AnySelect) -> AnySelect:
        """Make a fence check keep the delivery row from being claimed until commit.

        KEY SHARE conflicts with a claim's FOR UPDATE but not with the plain UPDATE of a
        lease extension, so the step's heartbeat is not held up by its own edit.
        """
        return stmt.with_for_update(read=True, key_share=True)

    def serialize_claims(self, conn: Connection, run_id: str, step: str) -> None:
        """Serialize claims of one step of one run until commit (``max_running``)."""
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"{CLAIM_LOCK_PREFIX}{run_id}:{step}"},
        )

    def skip_locked(self, stmt: AnySelect, *, of: Table) -> AnySelect:
        """Make a sweep lock the rows of ``of`` it reads, skipping those another holds."""
        return stmt.with_for_update(skip_locked=True, of=of)

    def sweeper_lock(self, conn: Connection) -> None:
        """Wait for the database's sweeper lock; held until commit (sweepers take turns)."""
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('cw-sweeper', 0))"))

    def insert_ignore(self, table: Table) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` (any unique constraint)."""
        return pg_insert(table).on_conflict_do_nothing()

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """True when ``exc`` means "gave up waiting for a lock"."""
        return type(exc).__name__ == "LockNotAvailable"


class PostgresDialect(SqlDialect):
    """PostgreSQL through psycopg 3."""


class SqliteDialect(SqlDialect):
    """SQLite through the standard ``sqlite3`` module, in WAL mode."""

    name = "sqlite"

    def engine_options(self, busy_timeout_s: float) -> dict[str, Any]:
        # ``timeout`` is sqlite3's busy timeout: how long BEGIN IMMEDIATE waits for the
        # database's write lock before "database is locked".
        return {"connect_args": {"timeout": busy_timeout_s}}

    def install(self, engine: Engine) -> None:
        # The documented recipe: take BEGIN away from the sqlite3 module so that a writer
        # can say BEGIN IMMEDIATE (lock first, read second) and readers a plain BEGIN.
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)

    def lock_run(self, stmt: AnySelect) -> AnySelect:
        return stmt  # BEGIN IMMEDIATE already holds the database's write lock

    def lock_delivery(self, stmt: AnySelect) -> AnySelect:
        return stmt

    def hold_fence(self, stmt: AnySelect) -> AnySelect:
        return stmt

    def serialize_claims(self, conn: Connection, run_id: str, step: str) -> None:
        return None  # a writer holds the whole database already

    def skip_locked(self, stmt: AnySelect, *, of: Table) -> AnySelect:
        return stmt

    def sweeper_lock(self, conn: Connection) -> None:
        return None  # BEGIN IMMEDIATE: sweepers already take turns

    def insert_ignore(self, table: Table) -> Insert:
        return sqlite_insert(table).on_conflict_do_nothing()

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return "database is locked" in str(exc) or "database is busy" in str(exc)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # sqlite3 must not emit BEGIN by itself
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never wait for the writer. NORMAL sync is crash-safe for the
        # process in WAL mode; only an OS crash can drop the last commits, atomically.
        _set_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _set_wal(cursor: Any, within_s: float = 30.0) -> None:
    """Switch a new database to WAL. The switch needs the database to itself and SQLite
    answers "database is locked" at once (no busy wait) while another process writes
    to it, e.g. migrates it: try again until ``within_s`` runs out. A database already in
    WAL mode (every one after its first connection) answers at once."""
    deadline = time.monotonic() + within_s
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _sqlite_on_begin(conn: Connection) -> None:
    writer = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain ``postgresql://`` means psycopg 3 (a dependency)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def dialect_for(url: URL) -> SqlDialect:
    """The dialect class for a database URL; only PostgreSQL and SQLite are supported."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresDialect()
    if backend == "sqlite":
        return SqliteDialect()
    raise ValueError(f"unsupported database {backend!r}: use postgresql+psycopg:// or sqlite://")
