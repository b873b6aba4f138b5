"""Where PostgreSQL and SQLite differ, in one small class each.

The differences are: how a transaction takes the run's lock (``SELECT ... FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite, whose lock is the whole database and where
SQLAlchemy silently drops ``FOR UPDATE``), ``SKIP LOCKED`` for sweeps, the dialect's
``INSERT ... ON CONFLICT DO NOTHING``, and connection setup.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Insert, Select, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection

__all__ = ["WRITE_OPTION", "PostgresDialect", "SqlDialect", "SqliteDialect", "dialect_for"]

#: Connection execution option that marks a transaction as a writer (BEGIN IMMEDIATE).
WRITE_OPTION = "cw_write"


class SqlDialect:
    """The PostgreSQL behaviour; :class:`SqliteDialect` overrides what differs."""

    name = "postgresql"

    def engine_options(self, busy_timeout_s: float) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        # pre_ping turns a connection killed by a server restart into a reconnect instead
        # of a failed transaction; it costs one round trip on checkout. lock_timeout gives
        # busy_timeout_s the meaning it has on SQLite: the longest wait for a run's lock.
        lock_timeout_ms = max(1, round(busy_timeout_s * 1000))
        return {
            "pool_pre_ping": True,
            "connect_args": {
                "connect_timeout": 10,
                "options": f"-c lock_timeout={lock_timeout_ms}",
            },
        }

    def install(self, engine: Engine) -> None:
        """Attach event hooks to a new engine."""

    def lock_run(self, stmt: Select[Any]) -> Select[Any]:
        """Make ``stmt`` (a select of the run row) take the row's write lock."""
        return stmt.with_for_update()

    def lock_delivery(self, stmt: Select[Any]) -> Select[Any]:
        """Make ``stmt`` lock the delivery row it reads (claims vs. lease extensions)."""
        return stmt.with_for_update()

    def skip_locked(self, stmt: Select[Any]) -> Select[Any]:
        """Make a sweep skip rows another sweeper holds."""
        return stmt.with_for_update(skip_locked=True)

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

    def lock_run(self, stmt: Select[Any]) -> Select[Any]:
        return stmt  # BEGIN IMMEDIATE already holds the database's write lock

    def lock_delivery(self, stmt: Select[Any]) -> Select[Any]:
        return stmt

    def skip_locked(self, stmt: Select[Any]) -> Select[Any]:
        return stmt

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
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    writer = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def dialect_for(url: URL) -> SqlDialect:
    """The dialect class for a database URL; only PostgreSQL and SQLite are supported."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresDialect()
    if backend == "sqlite":
        return SqliteDialect()
    raise ValueError(f"unsupported database {backend!r}: use postgresql+psycopg:// or sqlite://")
