"""A transaction of the in-memory run store, and the row it works on.

Writes are buffered and applied at commit without an await in between, so no other
task sees half of them; dropping the transaction is its rollback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from celery_workflows.errors import DeliveryNotFoundError, FencedOutError
from celery_workflows.store.base import (
    TERMINAL_RUN_STATUSES,
    DeliveryRecord,
    Fence,
    JournalMark,
    NewDelivery,
    RunRecord,
    RunStatus,
    StreamEntry,
)
from celery_workflows.store.rules import first_published_at

__all__ = ["MemoryTxn", "RunRow", "Tables", "fence_holds"]


@dataclass
class RunRow:
    """Everything the store keeps for one run (mutable; records inside are frozen)."""

    record: RunRecord
    delivery_ids: list[str] = field(default_factory=list)  # creation order
    open_ids: dict[str, None] = field(default_factory=dict)  # ordered set
    stream: list[StreamEntry] = field(default_factory=list)
    dedupe: dict[str, int] = field(default_factory=dict)
    #: Journal marks of the run's invocations (they go with the run).
    journal: dict[tuple[str, int], JournalMark] = field(default_factory=dict)
    #: A released run's deliveries (see ``InMemoryRunStore.release``): they live and
    #: die with the row.
    kept: dict[str, DeliveryRecord] = field(default_factory=dict)


class Tables(Protocol):
    """What a transaction needs of its store: the delivery rows and how to change them."""

    _deliveries: dict[str, DeliveryRecord]

    def clock(self) -> datetime: ...

    def _insert_deliveries(
        self, row: RunRow, deliveries: Sequence[NewDelivery], now: datetime
    ) -> None: ...

    def _close_delivery(self, record: DeliveryRecord) -> None: ...


def fence_holds(delivery: DeliveryRecord, fence: Fence) -> bool:
    return delivery.status == "running" and delivery.attempt == fence.attempt


_UNSET: Any = object()
_DeliveryOp = tuple[Literal["add"], NewDelivery] | tuple[Literal["set"], str, dict[str, Any]]


class MemoryTxn:
    """A buffered transaction on one run of an ``InMemoryRunStore``.

    Writes are collected and applied by :meth:`commit` in one go (no await in between, so
    nothing can observe half of them); dropping the object is the rollback.
    """

    def __init__(self, store: Tables, row: RunRow) -> None:
        self._store = store
        self._row = row
        self._run = row.record
        self._state: Any = _UNSET
        self._meta: Any = _UNSET
        self._status: tuple[RunStatus, Any, dict[str, Any] | None] | None = None
        self._journal: dict[tuple[str, int], JournalMark] = {}
        self._ops: list[_DeliveryOp] = []
        self._touched: dict[str, DeliveryRecord] = {}  # this txn's view of fenced rows
        self.fences: list[Fence] = []  # re-checked at commit: a claim may have superseded
        self._stream: list[tuple[Any, str | None]] = []
        self._stream_keys: dict[str, int] = {}

    @property
    def run(self) -> RunRecord:
        """The run as read under the lock (this transaction's writes are not in it)."""
        return self._run

    def check_fence(self, fence: Fence) -> DeliveryRecord:
        """Raise FencedOutError unless ``fence`` is the delivery's current running attempt."""
        delivery = self._touched.get(fence.delivery_id) or self._store._deliveries.get(
            fence.delivery_id
        )
        if delivery is None or delivery.run_id != self._run.run_id:
            raise DeliveryNotFoundError(fence.delivery_id)
        if not fence_holds(delivery, fence):
            raise FencedOutError(
                fence.delivery_id, fence.attempt, delivery.attempt, delivery.status
            )
        return delivery

    async def journal_get(self, journal_id: str, index: int) -> JournalMark | None:
        """The mark of edit ``index`` of ``journal_id`` (committed or put in this txn)."""
        key = (journal_id, index)
        return self._journal.get(key) or self._row.journal.get(key)

    def journal_put(self, journal_id: str, index: int, result: Any = None) -> None:
        """Record edit ``index`` of ``journal_id`` as part of this transaction."""
        self._journal[(journal_id, index)] = JournalMark(journal_id, index, result)

    def set_state(self, state: Any) -> None:
        """Replace the state payload at commit (the object is stored as given)."""
        self._state = state

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Replace the run's meta at commit."""
        self._meta = meta

    def set_status(
        self, status: RunStatus, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """Move the run to ``status`` at commit; terminal cancels its open deliveries."""
        self._status = (status, result, error)

    def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> None:
        """Insert deliveries at commit; existing ids are left as they are."""
        self._ops.extend(("add", d) for d in deliveries)

    def finish_delivery(
        self,
        fence: Fence,
        status: Literal["done", "failed", "cancelled"],
        error: dict[str, Any] | None = None,
    ) -> None:
        """Close the fenced delivery at commit (the fence is checked now)."""
        self._fenced_set(fence, status=status, error=error, lease_expires_at=None)

    def reschedule_delivery(
        self, fence: Fence, not_before: datetime, extra: dict[str, Any]
    ) -> None:
        """Put the fenced delivery back to pending, due at ``not_before``."""
        self._fenced_set(
            fence,
            status="pending",
            not_before=not_before,
            extra=extra,
            lease_expires_at=None,
            published_at=first_published_at(self._store.clock(), not_before),
        )

    def _fenced_set(self, fence: Fence, **changes: Any) -> None:
        delivery = self.check_fence(fence)
        changes["updated_at"] = self._store.clock()
        self._touched[fence.delivery_id] = dataclasses.replace(delivery, **changes)
        self.fences.append(fence)
        self._ops.append(("set", fence.delivery_id, changes))

    async def append_stream(self, event: Any, dedupe_key: str | None = None) -> int:
        """Append to the stream at commit and return the entry's seq."""
        if dedupe_key is not None:
            seq = self._stream_keys.get(dedupe_key) or self._row.dedupe.get(dedupe_key)
            if seq is not None:
                return seq
        self._stream.append((event, dedupe_key))
        seq = len(self._row.stream) + len(self._stream)
        if dedupe_key is not None:
            self._stream_keys[dedupe_key] = seq
        return seq

    async def open_deliveries(self) -> list[DeliveryRecord]:
        """The run's committed pending and running deliveries."""
        deliveries = self._store._deliveries
        return [deliveries[d] for d in self._row.open_ids]

    @property
    def notifies(self) -> bool:
        """True when the commit wakes the run's waiters (a stream entry or a status)."""
        return bool(self._stream) or self._status is not None

    def commit(self) -> None:
        """Apply every buffered write; runs without awaiting, so it is atomic.

        Raises FencedOutError, writing nothing, if a fence of this transaction was
        superseded by a claim since it was checked.
        """
        store, row = self._store, self._row
        for fence in self.fences:
            current = store._deliveries[fence.delivery_id]
            if not fence_holds(current, fence):
                raise FencedOutError(
                    fence.delivery_id, fence.attempt, current.attempt, current.status
                )
        now = store.clock()
        row.journal.update(self._journal)
        for op in self._ops:
            if op[0] == "add":
                store._insert_deliveries(row, [op[1]], now)
            else:  # applied to the row as it is now (a lease or publish may have moved)
                store._close_delivery(dataclasses.replace(store._deliveries[op[1]], **op[2]))
        for event, key in self._stream:
            seq = len(row.stream) + 1
            row.stream.append(StreamEntry(row.record.run_id, seq, event, now))
            if key is not None:
                row.dedupe[key] = seq
        self._commit_run(now)

    def _commit_run(self, now: datetime) -> None:
        changes: dict[str, Any] = {}
        if self._state is not _UNSET:
            changes["state"] = self._state
        if self._meta is not _UNSET:
            changes["meta"] = self._meta
        if self._status is not None:
            changes["status"], changes["result"], changes["error"] = self._status
        if not changes:
            return
        row = self._row
        row.record = dataclasses.replace(row.record, updated_at=now, **changes)
        if self._status is not None and self._status[0] in TERMINAL_RUN_STATUSES:
            for delivery_id in list(row.open_ids):
                delivery = self._store._deliveries[delivery_id]
                self._store._close_delivery(
                    dataclasses.replace(
                        delivery, status="cancelled", lease_expires_at=None, updated_at=now
                    )
                )
