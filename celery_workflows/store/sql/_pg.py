"""PostgreSQL's hot path: the statements of a step hop sent through psycopg pipelines.

On a local PostgreSQL a transaction costs round trips more than server time, and
SQLAlchemy sends each statement, BEGIN and COMMIT as a round trip of its own. Here the
statements whose results are not needed in between are queued in one pipeline:

- a claim (lock the delivery row, read it, update it, commit) is one round trip;
- a locked transaction opens with one (BEGIN, the run row ``FOR UPDATE``, the fence);
- its buffered writes and COMMIT are one more.

The statements are written out for PostgreSQL, with column lists taken from the schema.
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
from sqlalchemy import Column, Connection, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql

from celery_workflows.store.base import OPEN_DELIVERY_STATUSES, TERMINAL_RUN_STATUSES
from celery_workflows.store.sql.schema import deliveries, journal, runs, stream

__all__ = ["PgHotPath", "Statement"]

#: One statement and its parameters (a list of them: the statement once per item).
Statement = tuple[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _cast(column: Column[Any]) -> str:
    # JSON payloads arrive as encoded text; every other parameter is typed by psycopg.
    name = column.type.compile(dialect=_PG)
    return f"::{name}" if name in ("JSON", "JSONB") else ""


def _quoted(values: Sequence[str] | frozenset[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def _insert(table: Table, *, ignore_conflicts: bool = False) -> str:
    names = ", ".join(c.name for c in table.c)
    values = ", ".join(f"%({c.name})s{_cast(c)}" for c in table.c)
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    return f"INSERT INTO {table.name} ({names}) VALUES ({values}){tail}"


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
    """The pipelined statements of one database (built once per store)."""

    _FENCED = "delivery_id = %(p_id)s AND attempt = %(p_attempt)s AND status = 'running'"

    def __init__(self) -> None:
        run_columns = ", ".join(c.name for c in runs.c)
        d = deliveries.name
        self.select_run = f"SELECT {run_columns} FROM {runs.name} WHERE run_id = %(p_run_id)s"
        self.select_run_locked = f"{self.select_run} FOR UPDATE"
        self.select_stream = (
            f"SELECT run_id, seq, event, created_at FROM {stream.name} "
            "WHERE run_id = %(p_run_id)s AND seq > %(p_after)s ORDER BY seq"
        )
        self.select_stream_limited = f"{self.select_stream} LIMIT %(p_limit)s"
        # KEY SHARE, as in SqlDialect.hold_fence: blocks claims, not lease extensions.
        self.hold_fence = (
            f"SELECT run_id, attempt, status FROM {d} WHERE delivery_id = %(p_id)s FOR KEY SHARE"
        )
        self.insert_journal = _insert(journal)
        self.insert_deliveries = _insert(deliveries, ignore_conflicts=True)
        self.insert_stream = _insert(stream)
        self.finish_delivery = (
            f"UPDATE {d} SET status = %(p_status)s, error = %(p_error)s::JSON, "
            f"lease_expires_at = NULL, updated_at = %(p_now)s WHERE {self._FENCED}"
        )
        self.reschedule_delivery = (
            f"UPDATE {d} SET status = 'pending', not_before = %(p_not_before)s, "
            "extra = %(p_extra)s::JSON, lease_expires_at = NULL, "
            "published_at = %(p_published_at)s, updated_at = %(p_now)s "
            f"WHERE {self._FENCED}"
        )
        self.cancel_open_deliveries = (
            f"UPDATE {d} SET status = 'cancelled', lease_expires_at = NULL, "
            f"updated_at = %(p_now)s WHERE run_id = %(p_run_id)s "
            f"AND status IN ({_quoted(OPEN_DELIVERY_STATUSES)})"
        )
        self._init_claim()
        self._run_updates: dict[tuple[str, ...], str] = {}

    def _init_claim(self) -> None:
        d = deliveries.name
        lock = f"FROM {d} WHERE delivery_id = %(p_id)s FOR UPDATE"
        # FOR UPDATE waits for a locked() block that holds this delivery's fence. The
        # advisory key is SqlDialect.serialize_claims' key, so both claim paths agree.
        self.claim_lock = f"SELECT 1 {lock}"
        self.claim_lock_step = (
            "SELECT pg_advisory_xact_lock(hashtextextended("
            f"'cw-claim:' || run_id || ':' || step, 0)) {lock}"
        )
        # Both statements below run after the locks are held, so under READ COMMITTED
        # they read what the lock holders committed.
        live_running = (
            f"(SELECT count(*) FROM {d} AS o WHERE o.run_id = d.run_id AND o.step = d.step "
            "AND o.status = 'running' AND o.delivery_id <> d.delivery_id "
            "AND o.lease_expires_at >= %(p_now)s)"
        )
        columns = ", ".join(f"d.{c.name}" for c in deliveries.c)
        self.claim_facts = (
            f"SELECT {columns}, r.status AS run_status, r.workflow_name AS run_workflow, "
            f"{live_running} AS live_running "
            f"FROM {d} AS d JOIN {runs.name} AS r ON r.run_id = d.run_id "
            "WHERE d.delivery_id = %(p_id)s"
        )
        # The claim_outcome() == "claimed" rule in one statement.
        self.claim_update = (
            f"UPDATE {d} AS d SET status = 'running', attempt = d.attempt + 1, "
            "lease_expires_at = %(p_lease)s, updated_at = %(p_now)s "
            f"FROM {runs.name} AS r WHERE d.delivery_id = %(p_id)s AND r.run_id = d.run_id "
            f"AND r.status NOT IN ({_quoted(TERMINAL_RUN_STATUSES)}) "
            "AND (%(p_workflow)s::TEXT IS NULL OR r.workflow_name = %(p_workflow)s::TEXT) "
            "AND ((d.status = 'pending' AND (d.not_before IS NULL OR d.not_before <= %(p_now)s))"
            " OR (d.status = 'running' AND (d.lease_expires_at IS NULL"
            " OR d.lease_expires_at < %(p_now)s))) "
            f"AND (%(p_max)s::INTEGER IS NULL OR {live_running} < %(p_max)s::INTEGER) "
            f"RETURNING {columns}"
        )

    def update_run(self, columns: Sequence[str]) -> str:
        """``UPDATE cw_runs`` setting ``columns`` from ``p_<column>`` (cached per set)."""
        key = tuple(columns)
        sql = self._run_updates.get(key)
        if sql is None:
            sets = ", ".join(f"{name} = %(p_{name})s{_cast(runs.c[name])}" for name in key)
            sql = f"UPDATE {runs.name} SET {sets} WHERE run_id = %(p_run_id)s"
            self._run_updates[key] = sql
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

    def claim(self, conn: Connection, params: Mapping[str, Any], *, serialize: bool) -> Claimed:
        """Lock, read, claim if claimable, and commit: one round trip.

        The read tells the caller why a delivery was not claimed, with no second
        transaction.
        """
        with _raw(conn) as pg:
            facts_cur = pg.cursor(row_factory=_utc_rows)
            claim_cur = pg.cursor(row_factory=_utc_rows)
            with pg.pipeline():
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
