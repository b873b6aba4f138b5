"""PostgreSQL's hot path: the statements of a step hop sent through psycopg pipelines.

On a local PostgreSQL a transaction costs round trips more than server time, and
SQLAlchemy sends each statement, BEGIN and COMMIT as a round trip of its own. Here the
statements whose results are not needed in between are queued in one pipeline:

- a claim (lock the delivery row, read it, update it, commit) is one round trip;
- a locked transaction opens with one (BEGIN, the run row ``FOR UPDATE``, the fence);
- its buffered writes and COMMIT are one more.

The statements are those of the catalogue (:mod:`.queries`), compiled for psycopg.
They run on the psycopg connection under a SQLAlchemy ``Connection`` that has begun its
transaction, so the pool, the retry of a dropped connection and the error translation of
:class:`~._db.Database` stay as they are; a psycopg error is raised as SQLAlchemy's
``DBAPIError`` for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import ClauseElement, Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from celery_workflows.store.sql.queries import Queries
from celery_workflows.store.sql.schema import deliveries, journal, runs, stream

__all__ = ["PgHotPath", "Statement"]

#: One statement and its parameters (a list of them: the statement once per item).
Statement = tuple[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]

_PG = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]

#: This transaction's COMMIT returns before its WAL record is on disk (PostgreSQL writes
#: it within ``3 * wal_writer_delay``, and with any later synchronous commit).
_UNFLUSHED_COMMIT = "SET LOCAL synchronous_commit = off"


def _sql(stmt: ClauseElement, column_keys: Sequence[str] | None = None) -> str:
    """``stmt`` of the statement catalogue as PostgreSQL text with ``%(name)s``
    parameters (psycopg's style, JSON parameters cast from their encoded text)."""
    compiled = stmt.compile(dialect=_PG, column_keys=column_keys)
    fixed = (
        set(compiled.params)
        - set(column_keys or ())
        - {name for name in compiled.params if name.startswith("p_")}
    )
    # A constant the catalogue left as a parameter would need a value at every call.
    assert not fixed, f"statement has unnamed parameters {sorted(fixed)}: {compiled}"
    return str(compiled)


def _utc_rows(cursor: psycopg.Cursor[Any]) -> Any:
    """Named-tuple rows with timestamps in UTC (as ``UtcDateTime`` gives them)."""
    make = namedtuple_row(cursor)

    def row(values: Sequence[Any]) -> Any:
        return make([v.astimezone(UTC) if isinstance(v, datetime) else v for v in values])

    return row


class Claimed(NamedTuple):
    """What the pipelined claim saw: the delivery as read under its locks, with
    ``run_status`` and ``live_running`` (None: no such delivery), and the claimed row
    (None: it was not claimable)."""

    facts: Any
    row: Any


class PgHotPath:
    """The statements of :class:`~.queries.Queries` that the pipelines send, compiled
    once per store for psycopg."""

    def __init__(self, queries: Queries) -> None:
        self._q = queries
        self.select_run = _sql(queries.select_run)
        self.select_run_locked = _sql(queries.select_run_locked)
        self.select_stream = _sql(queries.select_stream)
        self.select_stream_limited = _sql(queries.select_stream_limited)
        # KEY SHARE, as in SqlDialect.hold_fence: blocks claims, not lease extensions.
        self.hold_fence = _sql(queries.select_delivery_fence)
        self.insert_run = _sql(queries.insert_run, [c.name for c in runs.c])
        self.insert_journal = _sql(queries.insert_journal, [c.name for c in journal.c])
        self.insert_deliveries = _sql(queries.insert_deliveries, [c.name for c in deliveries.c])
        self.insert_stream = _sql(queries.insert_stream, [c.name for c in stream.c])
        self.finish_delivery = _sql(queries.finish_delivery)
        self.reschedule_delivery = _sql(queries.reschedule_delivery)
        self.cancel_open_deliveries = _sql(queries.cancel_open_deliveries)
        assert queries.notify_run is not None  # the hot path is PostgreSQL's
        self.notify_run: str | None = _sql(queries.notify_run)
        lock, lock_step, facts, claim = queries.pipelined_claim()
        # FOR UPDATE waits for a locked() block that holds this delivery's fence.
        self.claim_lock = _sql(lock)
        self.claim_lock_step = _sql(lock_step)
        # Both statements below run after the locks are held, so under READ COMMITTED
        # they read what the lock holders committed.
        self.claim_facts = _sql(facts)
        self.claim_update = _sql(claim)
        self._run_updates: dict[tuple[str, ...], str] = {}

    def update_run(self, columns: Sequence[str]) -> str:
        """``UPDATE cw_runs`` setting ``columns`` from ``p_<column>`` (cached per set)."""
        key = tuple(columns)
        sql = self._run_updates.get(key)
        if sql is None:
            sql = self._run_updates[key] = _sql(self._q.update_run(key))
        return sql

    # -- execution, on the transaction's thread, inside a begun SQLAlchemy transaction

    def lock_run(self, conn: Connection, run_id: str, fence_id: str | None) -> tuple[Any, Any]:
        """Lock the run row and (if given) hold the fence's delivery row: one round trip.

        Returns the run row (None: no such run) and the delivery's head row.
        """
        with _raw(conn) as pg:
            run_cur = pg.cursor(row_factory=_utc_rows)
            fence_cur = pg.cursor(row_factory=_utc_rows)
            with pg.pipeline():
                run_cur.execute(self.select_run_locked, {"p_run_id": run_id})
                if fence_id is not None:
                    fence_cur.execute(self.hold_fence, {"p_id": fence_id})
            found = run_cur.fetchone()
            head = fence_cur.fetchone() if fence_id is not None else None
        return found, head

    def read(self, conn: Connection, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """One read-only statement in autocommit: no BEGIN and no COMMIT to wait for.

        For what callers poll (a run's row, its stream), where one statement sees a
        consistent snapshot by itself. Nothing may have run on ``conn``'s transaction yet
        (SQLAlchemy's begin sends nothing: psycopg begins at the first statement).
        """
        with _raw(conn) as pg:
            pg.autocommit = True
            try:
                return pg.cursor(row_factory=_utc_rows).execute(sql, params).fetchall()
            finally:
                pg.autocommit = False

    def commit(self, conn: Connection, statements: Sequence[Statement]) -> None:
        """Send ``statements`` and COMMIT in one round trip.

        No result is looked at: callers send only writes that cannot miss their row
        (fenced updates whose fence this transaction holds). An error aborts the
        transaction, so the COMMIT queued behind it commits nothing.
        """
        with _raw(conn) as pg:
            cur = pg.cursor()
            with pg.pipeline():
                for sql, params in statements:
                    if isinstance(params, Mapping):
                        cur.execute(sql, params)
                    else:
                        cur.executemany(sql, params)
                pg.commit()

    def create_run(
        self, conn: Connection, run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Insert the run (ignored if its id or key exists) and, if it is new, its first
        deliveries, and commit: two round trips where SQLAlchemy makes four (BEGIN, two
        INSERTs, COMMIT). False: it exists; nothing was written and the transaction is
        still open (the caller reads the existing run in it)."""
        with _raw(conn) as pg:
            cur = pg.cursor()
            with pg.pipeline() as pipeline:
                cur.execute(self.insert_run, run)
                pipeline.sync()  # the rowcount says whether this insert made the run
                if cur.rowcount != 1:
                    return False
                if rows:
                    cur.executemany(self.insert_deliveries, rows)
                pg.commit()
            return True

    def claim(self, conn: Connection, params: Mapping[str, Any], *, serialize: bool) -> Claimed:
        """Lock, read, claim if claimable, and commit: one round trip.

        The read tells the caller why a delivery was not claimed, with no second
        transaction. The commit does not wait for its WAL flush: a claim lost in a crash
        of the database is harmless (docs/architecture.md, "The claim's commit").
        """
        with _raw(conn) as pg:
            facts_cur = pg.cursor(row_factory=_utc_rows)
            claim_cur = pg.cursor(row_factory=_utc_rows)
            with pg.pipeline():
                pg.execute(_UNFLUSHED_COMMIT)
                pg.execute(self.claim_lock_step if serialize else self.claim_lock, params)
                facts_cur.execute(self.claim_facts, params)
                claim_cur.execute(self.claim_update, params)
                pg.commit()
            return Claimed(facts_cur.fetchone(), claim_cur.fetchone())


@contextmanager
def _raw(conn: Connection) -> Iterator[psycopg.Connection[Any]]:
    """The psycopg connection under ``conn``; its errors become SQLAlchemy's."""
    pg: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    try:
        yield pg
    except psycopg.Error as exc:
        broken = pg.broken or pg.closed
        if broken and not conn.invalidated:
            # As SQLAlchemy does on a disconnect, through its public API: this connection
            # is dropped and the pool renewed, so the pooled ones that broke with it (the
            # server probably restarted) are not handed out; checked-out ones finish.
            conn.invalidate(exc)
            conn.engine.dispose(close=False)
        raise sa_exc.DBAPIError.instance(
            None, None, exc, psycopg.Error, connection_invalidated=broken
        ) from exc
