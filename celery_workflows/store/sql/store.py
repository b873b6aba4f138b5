"""``SqlRunStore``: the run store on PostgreSQL or SQLite, through SQLAlchemy Core.

Concurrency model. SQLAlchemy's plain (sync) engine does the I/O; every transaction runs
on its own :class:`~._threads.TxnThread`, so the loop never blocks on a database lock, and
a ``locked()`` block keeps its thread and connection open across the awaits of its body.
The row lock (``FOR UPDATE`` / ``BEGIN IMMEDIATE``) is what serializes edits, between
threads, processes and machines alike; the per-process :class:`~._threads.LocalRunLocks`
only keeps coroutines of one loop from each holding a connection while they queue.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from celery_workflows.errors import DeliveryNotFoundError, RunNotFoundError
from celery_workflows.store.base import (
    TERMINAL_RUN_STATUSES,
    Claim,
    DeliveryRecord,
    DeliveryStatus,
    DueDelivery,
    Fence,
    NewDelivery,
    NewRun,
    RunQuery,
    RunRecord,
    StepKey,
    StreamEntry,
    utcnow,
)
from celery_workflows.store.changes import ChangeNotifier
from celery_workflows.store.rules import check_same_start, new_run_record
from celery_workflows.store.sql._claim import claim_txn, pipelined_claim
from celery_workflows.store.sql._codec import EncodedJson, check_state_size, encode
from celery_workflows.store.sql._db import Database
from celery_workflows.store.sql._listen import StoreChanges
from celery_workflows.store.sql._threads import LocalRunLocks, TxnThreadPool
from celery_workflows.store.sql._txn import SqlRunTxn, delivery_rows
from celery_workflows.store.sql.migrate import upgrade
from celery_workflows.store.sql.queries import (
    delivery_from_row,
    list_runs,
    run_from_row,
    stream_from_row,
    streams_after,
)

__all__ = ["DEFAULT_MAX_STATE_BYTES", "SqlRunStore"]

#: The default largest state, as JSON: every edit reads, decodes, encodes and writes the
#: whole state, so a state that keeps growing makes every later edit slower.
DEFAULT_MAX_STATE_BYTES = 10_000_000

#: Runs per statement of :meth:`SqlRunStore.read_streams`.
_STREAMS_PER_READ = 200

T = TypeVar("T")


class SqlRunStore:
    """A :class:`~celery_workflows.store.base.RunStore` in a PostgreSQL or SQLite database.

    ``url`` is a SQLAlchemy URL: ``postgresql+psycopg://user:pw@host/db`` or
    ``sqlite:///path/runs.db``. ``create_schema`` migrates the database to the newest
    schema before its first transaction (safe with several processes starting at once).
    Construction never connects: a process may start while its database is down (a
    worker booting during a PostgreSQL restart) and migrate on the first call after it
    is back. ``busy_timeout_s`` is the
    longest wait for a run's lock before StoreUnavailableError. Timestamps come from
    ``clock`` (this process's UTC clock by default), so hosts sharing a database should
    keep their clocks in sync. ``max_state_bytes`` is the largest state (as JSON) a run
    may keep: a write over it raises StateValidationError and changes nothing (None: no
    limit; default 10 MB).
    """

    payloads: Literal["json", "live"] = "json"
    never_suspends = False

    def __init__(
        self,
        url: str | URL,
        *,
        create_schema: bool = False,
        busy_timeout_s: float = 30.0,
        pool_size: int = 10,
        max_overflow: int = 20,
        clock: Callable[[], datetime] = utcnow,
        max_state_bytes: int | None = DEFAULT_MAX_STATE_BYTES,
    ) -> None:
        self.max_state_bytes = max_state_bytes
        self._db = Database(
            url,
            busy_timeout_s=busy_timeout_s,
            pool_size=pool_size,
            max_overflow=max_overflow,
            clock=clock,
        )
        self._q = self._db.queries
        self._threads = TxnThreadPool()
        self._local = LocalRunLocks()
        self._schema_pending = create_schema
        self._schema_lock = threading.Lock()
        url = self._db.url.render_as_string(hide_password=False)
        self._changes = StoreChanges(url, self._db.listen_args())

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self._db.masked_url

    # -- runs

    async def create_run(
        self, run: NewRun, deliveries: Sequence[NewDelivery]
    ) -> tuple[RunRecord, bool]:
        """Create the run and its deliveries, or return the existing run and False."""
        now = self._db.clock()
        state = _encoded(run.state, "state", run.run_id)
        check_state_size(state, self.max_state_bytes, run.run_id)
        values = {
            "run_id": run.run_id,
            "workflow_name": run.workflow_name,
            "code_version": run.code_version,
            "status": "running",
            "state": state,
            "meta": encode(run.meta, "meta", run.run_id),
            "result": None,
            "error": None,
            "idempotency_key": run.idempotency_key,
            "stream_seq": 0,
            "delivery_seq": len(deliveries),
            "created_at": now,
            "updated_at": now,
            "deadline_at": run.deadline_at,
            "start_fingerprint": run.start_fingerprint,
        }
        rows = delivery_rows(run.run_id, deliveries, 0, now)

        def txn(conn: Connection) -> tuple[RunRecord, bool]:
            if self._db.hot is not None:
                created = self._db.hot.create_run(conn, values, rows)
            else:
                created = conn.execute(self._q.insert_run, values).rowcount == 1
                if created and rows:
                    conn.execute(self._q.insert_deliveries, rows)
            if created:
                return new_run_record(run, now), True
            existing = self._existing_run(conn, run)
            check_same_start(existing, run)  # raises: the transaction rolls back
            return existing, False

        return await self._transaction(txn, write=True)

    async def get_run(self, run_id: str) -> RunRecord:
        """The committed run row (no lock). Raises RunNotFoundError."""
        params = {"p_run_id": run_id}
        if self._db.hot is not None:
            rows = await self._read(self._db.hot.select_run, params)
            row = rows[0] if rows else None
        else:
            row = await self._one(self._q.select_run, params)
        if row is None:
            raise RunNotFoundError(run_id)
        return run_from_row(row)

    def locked(
        self, run_id: str, fence: Fence | None = None
    ) -> AbstractAsyncContextManager[SqlRunTxn]:
        """One transaction holding the run row's database lock (see ``RunStore.locked``)."""
        return self._locked(run_id, fence)

    @asynccontextmanager
    async def _locked(self, run_id: str, fence: Fence | None) -> AsyncIterator[SqlRunTxn]:
        async with self._local.hold(run_id):
            thread = self._threads.acquire()
            txn = SqlRunTxn(self._db, thread, run_id, max_state_bytes=self.max_state_bytes)
            try:
                await thread.run(lambda: self._with_schema(lambda: txn.begin(fence)))
                yield txn
                await thread.run(txn.commit)
                if txn.notifies:
                    self._changes.committed(run_id)
            except BaseException:
                # Queued behind whatever still runs on the thread (e.g. a lock wait that
                # a cancellation abandoned), so the connection is always given back.
                thread.submit(txn.close)
                raise
            finally:
                self._threads.release(thread)

    def watch(self) -> ChangeNotifier:
        """Where waiters on runs subscribe: woken by LISTEN/NOTIFY from every process on
        PostgreSQL, by this process's commits only on SQLite (see ``store/changes.py``)."""
        return self._changes.notifier()

    # -- deliveries

    async def claim(
        self,
        delivery_id: str,
        *,
        lease_seconds: float,
        max_running: int | None = None,
        workflow_name: str | None = None,
    ) -> Claim:
        """Start a new attempt of a delivery (see ``RunStore.claim``).

        The claim locks the delivery row, not the run row: it waits for an open
        ``locked()`` block fenced on this very delivery, but not for other steps of the
        run, so a step can start while another one awaits inside ``edit_state``. (On
        SQLite every writer waits for every other: the lock is the database's.)
        """
        lease = timedelta(seconds=lease_seconds)
        claim = pipelined_claim if self._db.hot is not None else claim_txn
        db = self._db
        return await self._transaction(
            lambda conn: claim(db, conn, delivery_id, lease, max_running, workflow_name),
            write=True,
        )

    async def extend_lease(self, fence: Fence, *, lease_seconds: float) -> bool:
        """Extend the lease of the current running attempt; False if it was superseded."""

        def txn(conn: Connection) -> bool:
            lease = self._db.clock() + timedelta(seconds=lease_seconds)
            params: dict[str, Any] = {
                "p_id": fence.delivery_id,
                "p_attempt": fence.attempt,
                "p_lease": lease,
            }
            return bool(conn.execute(self._q.extend_lease, params).rowcount == 1)

        return await self._transaction(txn, write=True)

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord:
        """The committed delivery row. Raises DeliveryNotFoundError."""
        row = await self._one(self._q.select_delivery, {"p_id": delivery_id})
        if row is None:
            raise DeliveryNotFoundError(delivery_id)
        return delivery_from_row(row)

    async def list_deliveries(
        self, run_id: str, statuses: Sequence[DeliveryStatus] | None = None
    ) -> list[DeliveryRecord]:
        """A run's deliveries in creation order, optionally filtered by status."""
        params: dict[str, Any] = {"p_run_id": run_id}
        stmt = self._q.list_deliveries
        if statuses is not None:
            stmt, params["p_statuses"] = self._q.list_deliveries_by_status, list(statuses)
        rows = await self._all(stmt, params, check_run=run_id)
        return [delivery_from_row(row) for row in rows]

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first."""
        stmt, params = list_runs(query)
        return [run_from_row(row) for row in await self._all(stmt, params)]

    async def delete_runs(self, *, finished_before: datetime, limit: int = 1000) -> int:
        """Delete finished runs last updated before ``finished_before`` (their deliveries,
        journal and stream go with them: ON DELETE CASCADE)."""
        params = {"p_before": finished_before, "p_limit": limit}

        def txn(conn: Connection) -> int:
            ids = list(conn.execute(self._q.finished_before, params).scalars())
            if ids:
                conn.execute(self._q.delete_runs, {"p_ids": ids})
            return len(ids)

        return await self._transaction(txn, write=True)

    async def delete_run(self, run_id: str) -> bool:
        """Delete one finished run (deliveries, journal and stream: ON DELETE CASCADE);
        False if it is unknown or not finished."""

        def txn(conn: Connection) -> bool:
            found = conn.execute(self._q.select_run_status_locked, {"p_run_id": run_id}).first()
            if found is None or found.status not in TERMINAL_RUN_STATUSES:
                return False
            conn.execute(self._q.delete_runs, {"p_ids": [run_id]})
            return True

        return await self._transaction(txn, write=True)

    async def expired_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs still going past their ``deadline_at``, oldest deadline first."""
        params = {"p_now": self._db.clock(), "p_limit": limit}
        return [run_from_row(row) for row in await self._all(self._q.expired_runs, params)]

    async def mark_published(self, delivery_id: str, at: datetime) -> None:
        """Record that a pending delivery's message was published again, consumable ``at``."""
        params = {"p_id": delivery_id, "p_at": at}
        await self._transaction(lambda c: c.execute(self._q.mark_one_published, params), write=True)

    async def take_due(
        self,
        *,
        stale_before: datetime,
        served: Collection[StepKey],
        idle: Collection[StepKey],
        limit: int = 200,
    ) -> list[DueDelivery]:
        """Deliveries to publish again, stamped published (see ``RunStore.take_due``)."""
        now = self._db.clock()
        params: dict[str, Any] = {
            "p_now": now,
            "p_stale_before": stale_before,
            "p_limit": limit,
        }
        params["p_served"], params["p_idle"] = list(served), list(idle)
        wanted = (
            (self._q.due_running, params["p_served"]),
            (self._q.due_pending, params["p_idle"]),
        )

        def txn(conn: Connection) -> list[DueDelivery]:
            self._db.dialect.sweeper_lock(conn)
            rows: list[Any] = []
            for stmt, keys in wanted:
                if keys and len(rows) < limit:
                    batch = {**params, "p_limit": limit - len(rows)}
                    rows.extend(conn.execute(stmt, batch).all())
            if rows:
                ids = [row.delivery_id for row in rows]
                conn.execute(self._q.mark_published, {"p_ids": ids, "p_now": now})
            return [_stamped(row, now) for row in rows]

        return await self._transaction(txn, write=True)

    # -- stream

    async def read_stream(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StreamEntry]:
        """Stream entries with ``seq > after_seq`` in order."""
        params: dict[str, Any] = {"p_run_id": run_id, "p_after": after_seq}
        if limit is not None:
            params["p_limit"] = limit
        hot = self._db.hot
        if hot is None:
            stmt = self._q.select_stream if limit is None else self._q.select_stream_limited
            rows = await self._all(stmt, params, check_run=run_id)
        else:
            sql = hot.select_stream if limit is None else hot.select_stream_limited
            rows = await self._read(sql, params)
            if not rows:
                await self.get_run(run_id)  # RunNotFoundError for an unknown run
        return [stream_from_row(row) for row in rows]

    async def read_streams(
        self, cursors: Mapping[str, int], limit: int = 1000
    ) -> dict[str, list[StreamEntry]]:
        """New entries of several runs in one statement per chunk of runs (unknown runs
        are left out), ``limit`` in all."""
        found: dict[str, list[StreamEntry]] = {}
        items = list(cursors.items())
        left = limit
        # Chunks keep the OR chain short: SQLite caps the depth of an expression tree.
        for start in range(0, len(items), _STREAMS_PER_READ):
            if left <= 0:
                break
            stmt, params = streams_after(items[start : start + _STREAMS_PER_READ], left)
            for row in await self._all(stmt, params):
                entry = stream_from_row(row)
                found.setdefault(entry.run_id, []).append(entry)
                left -= 1
        return found

    async def close(self) -> None:
        """Stop idle threads and close pooled connections."""
        await self._run_on_own_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._changes.close()
        self._threads.close()
        self._db.dispose()

    # -- plumbing

    async def _transaction(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        return await self._run_on_own_thread(
            lambda: self._with_schema(lambda: self._db.transaction(fn, write=write))
        )

    def _with_schema(self, fn: Callable[[], T]) -> T:
        """``fn()``, after the migration ``create_schema`` asked for (blocking; once).

        A failed migration (database down) leaves it pending: the next call tries again.
        """
        if self._schema_pending:
            with self._schema_lock:
                if self._schema_pending:
                    upgrade(self._db.url)
                    self._schema_pending = False
        return fn()

    async def _run_on_own_thread(self, fn: Callable[[], T]) -> T:
        thread = self._threads.acquire()
        try:
            return await thread.run(fn)
        finally:
            self._threads.release(thread)

    async def _read(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """A polled read on PostgreSQL: one statement in autocommit (see PgHotPath.read)."""
        hot = self._db.hot
        assert hot is not None

        return await self._transaction(lambda conn: hot.read(conn, sql, params), write=False)

    async def _one(self, stmt: Any, params: dict[str, Any]) -> Any:
        rows = await self._all(stmt, params)
        return rows[0] if rows else None

    async def _all(
        self, stmt: Any, params: dict[str, Any], check_run: str | None = None
    ) -> list[Any]:
        def txn(conn: Connection) -> list[Any]:
            rows = list(conn.execute(stmt, params).all())
            if not rows and check_run is not None:
                exists = conn.execute(self._q.run_exists, {"p_run_id": check_run}).first()
                if exists is None:
                    raise RunNotFoundError(check_run)
            return rows

        return await self._transaction(txn, write=False)

    def _existing_run(self, conn: Connection, run: NewRun) -> RunRecord:
        row = conn.execute(self._q.select_run, {"p_run_id": run.run_id}).one_or_none()
        if row is None and run.idempotency_key is not None:
            by_key = {"p_key": run.idempotency_key}
            row = conn.execute(self._q.select_run_by_key, by_key).one_or_none()
        if row is None:  # pragma: no cover - the conflicting insert committed or we'd wait
            raise RunNotFoundError(run.run_id)
        return run_from_row(row)


def _stamped(row: Any, now: datetime) -> DueDelivery:
    delivery = dataclasses.replace(delivery_from_row(row), published_at=now)
    return DueDelivery(delivery, row.workflow_name)


def _encoded(value: Any, label: str, run_id: str) -> EncodedJson | None:
    return None if value is None else encode(value, label, run_id)
