"""One locked transaction of the SQL run store (the ``RunTxn`` of ``SqlRunStore.locked``).

The transaction owns a connection and a :class:`~._threads.TxnThread` from ``begin`` to
``commit``/``close``; the body between them is the caller's code on the event loop.
Writes are encoded when made (so bad values fail at the call) and sent at commit, in the
order: journal marks, delivery changes (in call order), stream entries, the run row, and
last the cancellation of open deliveries if the run ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Executable, RootTransaction, Row

from celery_workflows.errors import DeliveryNotFoundError, FencedOutError, RunNotFoundError
from celery_workflows.store.base import (
    TERMINAL_RUN_STATUSES,
    DeliveryRecord,
    Fence,
    JournalMark,
    NewDelivery,
    RunRecord,
    RunStatus,
)
from celery_workflows.store.rules import first_published_at
from celery_workflows.store.sql._codec import EncodedJson, check_state_size, encode
from celery_workflows.store.sql._db import Database
from celery_workflows.store.sql._threads import TxnThread
from celery_workflows.store.sql.queries import delivery_from_row, run_from_row

__all__ = ["SqlRunTxn", "delivery_rows"]

_FencedOp = tuple[Literal["finish", "reschedule"], Fence, dict[str, Any]]
_Op = tuple[Literal["add"], list[dict[str, Any]]] | _FencedOp
#: A statement, its parameters (a list: once per item), and the fence it must not miss.
_Write = tuple[Any, Any, Fence | None]


class SqlRunTxn:
    """A transaction holding one run's row lock; see ``RunTxn`` for the contract."""

    def __init__(
        self, db: Database, thread: TxnThread, run_id: str, *, max_state_bytes: int | None = None
    ) -> None:
        self._db = db
        self._max_state_bytes = max_state_bytes
        self._q = db.queries
        self._thread = thread
        self._run_id = run_id
        self._conn: Connection | None = None
        self._trans: RootTransaction | None = None
        self._run: RunRecord | None = None
        self._stream_seq = 0
        self._delivery_seq = 0
        self._fences: dict[str, int] = {}  # delivery id -> attempt verified as running
        self._held: set[str] = set()  # of those, the ones whose row this txn keeps locked
        self._closed_here: set[str] = set()
        self._values: dict[str, Any] = {}
        self._terminal = False
        self._journal: dict[tuple[str, int], tuple[dict[str, Any], JournalMark]] = {}
        self._ops: list[_Op] = []
        self._stream: list[dict[str, Any]] = []
        self._stream_keys: dict[str, int] = {}

    # -- lifecycle, each called on the transaction's thread

    def begin(self, fence: Fence | None) -> None:
        """Open the transaction, lock the run row, and check ``fence``."""
        with self._db.guard():
            # SQLite: the transaction begins IMMEDIATE, holding the database's write lock.
            begun = self._db.begin(lambda conn: self._lock_row(conn, fence), write=True)
        self._conn, self._trans, found = begun
        self._run = run_from_row(found)
        self._stream_seq = found.stream_seq
        self._delivery_seq = found.delivery_seq

    def _lock_row(self, conn: Connection, fence: Fence | None) -> Row[Any]:
        hot = self._db.hot
        if hot is not None:
            fence_id = fence.delivery_id if fence is not None else None
            found, head = hot.lock_run(conn, self._run_id, fence_id)
        else:
            found = conn.execute(self._q.select_run_locked, {"p_run_id": self._run_id})
            found, head = found.one_or_none(), None
        if found is None:
            raise RunNotFoundError(self._run_id)
        if fence is not None:
            if hot is None:
                head = self._fence_head(conn, fence, hold=True)
            self._verify_fence(head, fence, held=True)
        return found  # type: ignore[no-any-return]

    def commit(self) -> None:
        """Send the buffered writes and commit; the connection is closed either way."""
        try:
            with self._db.guard():
                self._flush(self._connection(), self._db.clock())
                assert self._trans is not None
                self._trans.commit()
        finally:
            self.close()

    def close(self) -> None:
        """Roll back (if still open) and return the connection; never raises."""
        conn, self._conn, self._trans = self._conn, None, None
        if conn is not None:
            # Closing with an open transaction rolls it back; a broken connection is
            # discarded by the pool either way.
            with contextlib.suppress(Exception):
                conn.close()

    # -- RunTxn

    @property
    def run(self) -> RunRecord:
        """The run row as read under the lock (this transaction's writes are not in it)."""
        assert self._run is not None, "the transaction has not begun"
        return self._run

    async def journal_get(self, journal_id: str, index: int) -> JournalMark | None:
        """The mark of edit ``index`` of ``journal_id`` (committed or put in this txn)."""
        pending = self._journal.get((journal_id, index))
        if pending is not None:
            return pending[1]
        params = {"p_journal_id": journal_id, "p_index": index}
        rows = await self._fetch(self._q.select_journal, params)
        return JournalMark(journal_id, index, rows[0].result) if rows else None

    def journal_put(self, journal_id: str, index: int, result: Any = None) -> None:
        """Record edit ``index`` of ``journal_id`` as part of this transaction."""
        encoded = self._encode(result, f"journal[{journal_id!r}][{index}].result")
        row = {
            "run_id": self._run_id,
            "journal_id": journal_id,
            "edit_index": index,
            "result": encoded,
            "created_at": self._db.clock(),
        }
        self._journal[(journal_id, index)] = (row, JournalMark(journal_id, index, result))

    def set_state(self, state: Any) -> None:
        """Replace the run's state at commit (encoded now: a bad or oversize value fails
        here, and the transaction keeps the state it had)."""
        encoded = self._encode(state, "state")
        check_state_size(encoded, self._max_state_bytes, self._run_id)
        self._values["state"] = encoded

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Replace the run's meta at commit."""
        self._values["meta"] = self._encode(meta, "meta")

    def set_status(
        self, status: RunStatus, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """Move the run to ``status`` at commit; terminal cancels its open deliveries."""
        self._values["status"] = status
        self._values["result"] = self._encode(result, "result")
        self._values["error"] = self._encode(error, "error")
        self._terminal = status in TERMINAL_RUN_STATUSES

    def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> None:
        """Insert deliveries at commit; an id that already exists is left as it is."""
        if not deliveries:
            return
        rows = delivery_rows(self._run_id, deliveries, self._delivery_seq, self._db.clock())
        self._delivery_seq += len(rows)
        self._values["delivery_seq"] = self._delivery_seq
        self._ops.append(("add", rows))

    def finish_delivery(
        self,
        fence: Fence,
        status: Literal["done", "failed", "cancelled"],
        error: dict[str, Any] | None = None,
    ) -> None:
        """Close the fenced delivery at commit (the fence is checked now)."""
        params = {"p_status": status, "p_error": self._encode(error, "delivery error")}
        self._fenced_op("finish", fence, params)

    def reschedule_delivery(
        self, fence: Fence, not_before: datetime, extra: dict[str, Any]
    ) -> None:
        """Put the fenced delivery back to pending, due at ``not_before``."""
        params = {
            "p_not_before": not_before,
            "p_extra": self._encode(extra, "extra"),
            "p_published_at": first_published_at(self._db.clock(), not_before),
        }
        self._fenced_op("reschedule", fence, params)

    async def append_stream(self, event: Any, dedupe_key: str | None = None) -> int:
        """Append to the stream at commit and return the entry's seq."""
        encoded = self._encode(event, f"stream[{self._stream_seq + 1}]")
        if dedupe_key is not None:
            known = self._stream_keys.get(dedupe_key)
            if known is None:
                known = await self._committed_seq(dedupe_key)
            if known is None:
                known = self._stream_keys.get(dedupe_key)  # a concurrent append won
            if known is not None:
                return known
        self._stream_seq += 1
        self._values["stream_seq"] = self._stream_seq
        self._stream.append(
            {
                "run_id": self._run_id,
                "seq": self._stream_seq,
                "event": encoded,
                "dedupe_key": dedupe_key,
                "created_at": self._db.clock(),
            }
        )
        if dedupe_key is not None:
            self._stream_keys[dedupe_key] = self._stream_seq
        return self._stream_seq

    async def open_deliveries(self) -> list[DeliveryRecord]:
        """The run's committed pending and running deliveries, in creation order."""
        rows = await self._fetch(self._q.open_deliveries, {"p_run_id": self._run_id})
        return [delivery_from_row(row) for row in rows]

    # -- internals

    def _connection(self) -> Connection:
        assert self._conn is not None, "the transaction is not open"
        return self._conn

    async def _fetch(self, stmt: Executable, params: dict[str, Any]) -> list[Row[Any]]:
        def call() -> list[Row[Any]]:
            with self._db.guard():
                # Fetch on the thread: a result must not be consumed on the loop.
                return list(self._connection().execute(stmt, params).all())

        return await self._thread.run(call)

    async def _committed_seq(self, dedupe_key: str) -> int | None:
        params = {"p_run_id": self._run_id, "p_key": dedupe_key}
        rows = await self._fetch(self._q.select_stream_dedupe, params)
        return int(rows[0].seq) if rows else None

    def _encode(self, value: Any, label: str) -> EncodedJson | None:
        return None if value is None else encode(value, label, self._run_id)

    def _fenced_op(
        self, kind: Literal["finish", "reschedule"], fence: Fence, params: dict[str, Any]
    ) -> None:
        if fence.delivery_id in self._closed_here:
            raise FencedOutError(fence.delivery_id, fence.attempt, None, "closed in this txn")
        if self._fences.get(fence.delivery_id) != fence.attempt:
            # Rare (the locked fence is verified at begin): a plain read on the txn's own
            # connection, which waits for no lock. A claim after it is caught at commit.
            conn = self._connection()
            self._thread.run_blocking(lambda: self._check_fence_in_db(conn, fence))
        self._closed_here.add(fence.delivery_id)
        self._ops.append((kind, fence, params))

    def _check_fence_in_db(self, conn: Connection, fence: Fence) -> None:
        self._verify_fence(self._fence_head(conn, fence, hold=False), fence, held=False)

    def _fence_head(self, conn: Connection, fence: Fence, *, hold: bool) -> Row[Any] | None:
        # hold: keep the delivery row locked against claims until this transaction ends.
        stmt = self._q.select_delivery_fence if hold else self._q.select_delivery_head
        with self._db.guard():
            return conn.execute(stmt, {"p_id": fence.delivery_id}).one_or_none()

    def _verify_fence(self, found: Any, fence: Fence, *, held: bool) -> None:
        if found is None or found.run_id != self._run_id:
            raise DeliveryNotFoundError(fence.delivery_id)
        if found.status != "running" or found.attempt != fence.attempt:
            raise FencedOutError(fence.delivery_id, fence.attempt, found.attempt, found.status)
        self._fences[fence.delivery_id] = fence.attempt
        if held:
            self._held.add(fence.delivery_id)

    def _flush(self, conn: Connection, now: datetime) -> None:
        hot = self._db.hot
        if hot is not None and all(
            op[0] == "add" or op[1].delivery_id in self._held for op in self._ops
        ):
            # Every fenced write is on a row this txn holds: none can miss, so no result
            # needs looking at and the writes go in one round trip with the COMMIT.
            hot.commit(conn, [(sql, params) for sql, params, _ in self._writes(hot, now)])
            return
        for stmt, params, fence in self._writes(self._q, now):
            result = conn.execute(stmt, params)
            if fence is not None and result.rowcount != 1:
                # A claim superseded the attempt after the call-time check (possible
                # only for a fence other than the one the block was opened with).
                raise FencedOutError(fence.delivery_id, fence.attempt, None, "changed")

    def _writes(self, stmts: _Statements, now: datetime) -> list[_Write]:
        """The buffered writes in commit order, as ``stmts``' statements (SQLAlchemy's
        or the PostgreSQL hot path's), each with its fence if it has one."""
        out: list[_Write] = []
        if self._journal:
            out.append((stmts.insert_journal, [row for row, _ in self._journal.values()], None))
        for op in self._ops:
            if op[0] == "add":
                out.append((stmts.insert_deliveries, op[1], None))
                continue
            kind, fence, params = op
            stmt = stmts.finish_delivery if kind == "finish" else stmts.reschedule_delivery
            where = {"p_id": fence.delivery_id, "p_attempt": fence.attempt, "p_now": now}
            out.append((stmt, {**params, **where}, fence))
        if self._stream:
            out.append((stmts.insert_stream, self._stream, None))
        if self._values:
            values = {**self._values, "updated_at": now}
            params = {f"p_{name}": value for name, value in values.items()}
            out.append((stmts.update_run(list(values)), {**params, "p_run_id": self._run_id}, None))
        if self._terminal:
            params = {"p_run_id": self._run_id, "p_now": now}
            out.append((stmts.cancel_open_deliveries, params, None))
        if self.notifies and stmts.notify_run is not None:
            # Delivered at COMMIT to every listening process: their waiters on this run
            # read it now. Queued with the writes, so on the hot path it costs no round trip.
            out.append((stmts.notify_run, {"p_run_id": self._run_id}, None))
        return out

    @property
    def notifies(self) -> bool:
        """True when the commit wakes the run's waiters: it appends to the stream or
        changes the status (what results and streams wait for)."""
        return bool(self._stream) or "status" in self._values


class _Statements(Protocol):
    """The write statements, by the same names in ``Queries`` and ``PgHotPath``."""

    insert_journal: Any
    insert_deliveries: Any
    finish_delivery: Any
    reschedule_delivery: Any
    insert_stream: Any
    cancel_open_deliveries: Any
    notify_run: Any

    def update_run(self, columns: Sequence[str]) -> Any: ...


def delivery_rows(
    run_id: str, deliveries: Sequence[NewDelivery], after_seq: int, now: datetime
) -> list[dict[str, Any]]:
    """``cw_deliveries`` rows for new deliveries, payloads encoded (bad ones raise)."""
    rows = []
    for offset, new in enumerate(deliveries, start=1):
        label = f"deliveries[{offset - 1}]"
        rows.append(
            {
                "delivery_id": new.delivery_id,
                "run_id": run_id,
                "seq": after_seq + offset,
                "step": new.step,
                "event": None if new.event is None else encode(new.event, f"{label}.event", run_id),
                "status": "pending",
                "attempt": 0,
                "journal_id": new.journal_id or new.delivery_id,
                "parent_id": new.parent_id,
                "extra": encode(new.extra, f"{label}.extra", run_id),
                "error": None,
                "not_before": new.not_before,
                "lease_expires_at": None,
                "published_at": first_published_at(now, new.not_before),
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows
