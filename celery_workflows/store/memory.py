"""The in-memory run store: the whole database is a few dicts and one lock per run.

It is the store of the in-process engine, so it keeps payloads as the live objects it is
given (no JSON, no copies) and does no I/O. The rules it shares with the SQL store live in
:mod:`celery_workflows.store.rules`.

One store instance belongs to one event loop at a time: its per-run ``asyncio.Lock`` is the
"row lock", and asyncio locks are neither thread-safe nor shared between loops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from celery_workflows.errors import (
    DeliveryNotFoundError,
    RunNotFoundError,
)
from celery_workflows.store._memory_txn import MemoryTxn, RunRow, fence_holds
from celery_workflows.store.base import (
    OPEN_DELIVERY_STATUSES,
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
from celery_workflows.store.changes import ChangeNotifier, LocalNotifier
from celery_workflows.store.rules import (
    check_same_start,
    claim_outcome,
    first_published_at,
    lease_expired,
    needs_republish,
    new_run_record,
    run_matches,
)

__all__ = ["InMemoryRunStore"]

Clock = Callable[[], datetime]


# --- rules shared by every store -------------------------------------------------------


@dataclass
class _LockSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class InMemoryRunStore:
    """A :class:`~celery_workflows.store.base.RunStore` in dicts, for one process.

    ``clock`` returns timezone-aware UTC now; tests pass a fake one to move time.
    """

    payloads: Literal["json", "live"] = "live"
    never_suspends = True

    def __init__(self, *, clock: Clock = utcnow) -> None:
        self.clock = clock
        self._runs: dict[str, RunRow] = {}
        self._idempotency: dict[str, str] = {}
        self._deliveries: dict[str, DeliveryRecord] = {}
        self._open: dict[str, None] = {}  # open delivery ids of every run, for sweeps
        self._locks: dict[str, _LockSlot] = {}
        #: Finished runs kept only while something holds their row (see release()).
        self._released: weakref.WeakValueDictionary[str, RunRow] = weakref.WeakValueDictionary()
        # The store is its process's whole database: its own commits are every commit.
        self._changes = LocalNotifier(pushes=True)

    # -- runs

    async def create_run(
        self, run: NewRun, deliveries: Sequence[NewDelivery]
    ) -> tuple[RunRecord, bool]:
        """Create the run and its deliveries, or return the existing run and False."""
        existing = self._runs.get(run.run_id)
        if existing is None and run.idempotency_key is not None:
            other = self._idempotency.get(run.idempotency_key)
            existing = self._runs[other] if other is not None else None
        if existing is not None:
            check_same_start(existing.record, run)
            return existing.record, False
        record = new_run_record(run, self.clock())
        row = RunRow(record)
        self._runs[run.run_id] = row
        if run.idempotency_key is not None:
            self._idempotency[run.idempotency_key] = run.run_id
        self._insert_deliveries(row, deliveries, record.created_at)
        return record, True

    async def get_run(self, run_id: str) -> RunRecord:
        """The committed run record. Raises RunNotFoundError."""
        return self._row(run_id).record

    def locked(
        self, run_id: str, fence: Fence | None = None
    ) -> AbstractAsyncContextManager[MemoryTxn]:
        """Hold the run's lock for one buffered transaction (applied on clean exit)."""
        return self._locked(run_id, fence)

    @asynccontextmanager
    async def _locked(self, run_id: str, fence: Fence | None) -> AsyncIterator[MemoryTxn]:
        row = self._row(run_id)
        async with self._hold(run_id):
            txn = MemoryTxn(self, row)
            if fence is not None:
                txn.check_fence(fence)
                txn.fences.append(fence)
            yield txn
            txn.commit()
        if txn.notifies:
            self._changes.wake(run_id)

    def watch(self) -> ChangeNotifier:
        """Where waiters on runs subscribe: woken by this store's commits (its process's
        only ones), see ``store/changes.py``."""
        return self._changes

    # -- deliveries

    async def claim(
        self,
        delivery_id: str,
        *,
        lease_seconds: float,
        max_running: int | None = None,
        workflow_name: str | None = None,
    ) -> Claim:
        """Start a new attempt of a delivery (see the protocol).

        It does not wait for the run's lock: it runs without an await, so it is atomic
        here, and a locked block whose fence it supersedes is refused at its commit. A
        step can thus start while another step of its run awaits inside ``edit_state``.
        """
        delivery = self._deliveries.get(delivery_id)
        if delivery is None:
            return Claim("missing")
        row = self._runs[delivery.run_id]
        if workflow_name is not None and row.record.workflow_name != workflow_name:
            return Claim("wrong_workflow", delivery)
        now = self.clock()
        busy = 0 if max_running is None else self._live_running(row, delivery, now)
        outcome = claim_outcome(delivery, row.record.finished, now, busy, max_running)
        if outcome != "claimed":
            return Claim(outcome, delivery)
        claimed = dataclasses.replace(
            delivery,
            status="running",
            attempt=delivery.attempt + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        self._deliveries[delivery_id] = claimed
        return Claim("claimed", claimed)

    async def extend_lease(self, fence: Fence, *, lease_seconds: float) -> bool:
        """Extend the lease of the current running attempt; False if superseded."""
        delivery = self._deliveries.get(fence.delivery_id)
        if delivery is None or not fence_holds(delivery, fence):
            return False
        now = self.clock()
        self._deliveries[fence.delivery_id] = dataclasses.replace(
            delivery, lease_expires_at=now + timedelta(seconds=lease_seconds)
        )
        return True

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord:
        """The committed delivery. Raises DeliveryNotFoundError."""
        found = self._deliveries.get(delivery_id)
        if found is None:  # a released run's? (rare: a stray message of a finished run)
            rows = list(self._released.values())
            found = next((r.kept[delivery_id] for r in rows if delivery_id in r.kept), None)
        if found is None:
            raise DeliveryNotFoundError(delivery_id)
        return found

    async def list_deliveries(
        self, run_id: str, statuses: Sequence[DeliveryStatus] | None = None
    ) -> list[DeliveryRecord]:
        """A run's deliveries in creation order, optionally filtered by status."""
        row = self._row(run_id)
        records = [row.kept.get(d) or self._deliveries[d] for d in row.delivery_ids]
        if statuses is None:
            return records
        wanted = set(statuses)
        return [r for r in records if r.status in wanted]

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first."""
        runs = [row.record for row in self._runs.values() if run_matches(row.record, query)]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        if query.cursor is not None:
            runs = [r for r in runs if (r.created_at, r.run_id) < query.cursor]
        return runs[: query.limit]

    async def delete_runs(self, *, finished_before: datetime, limit: int = 1000) -> int:
        """Delete finished runs last updated before ``finished_before`` (and all of theirs)."""
        doomed = [
            run_id
            for run_id, row in self._runs.items()
            if row.record.finished and row.record.updated_at < finished_before
        ][:limit]
        for run_id in doomed:
            self._forget(run_id)
        return len(doomed)

    async def delete_run(self, run_id: str) -> bool:
        """Delete one finished run and all of its; False if unknown or not finished."""
        row = self._runs.get(run_id)
        if row is None or not row.record.finished:
            return False
        self._forget(run_id)
        return True

    def release(self, run_id: str) -> RunRow | None:
        """Keep a finished run only as long as something holds the returned row.

        The in-process runtime gives the row to the handlers and contexts of the run, so
        a run nobody refers to any more is freed (with its deliveries, which may hold live
        exceptions and through their tracebacks the step's context). None if the run is
        unknown or not finished.
        """
        row = self._runs.get(run_id)
        if row is None or not row.record.finished:
            return None
        row.kept = {d: self._deliveries[d] for d in row.delivery_ids if d in self._deliveries}
        self._forget(run_id)
        self._released[run_id] = row
        return row

    def pin(self, run_id: str) -> RunRow | None:
        """The run's row, to hold so that a released run stays readable (None: unknown)."""
        return self._runs.get(run_id) or self._released.get(run_id)

    def _forget(self, run_id: str) -> None:
        row = self._runs.pop(run_id)  # its journal goes with it
        for delivery_id in row.delivery_ids:
            self._deliveries.pop(delivery_id, None)
            self._open.pop(delivery_id, None)
        if row.record.idempotency_key is not None:
            self._idempotency.pop(row.record.idempotency_key, None)

    async def expired_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs still going past their ``deadline_at``, oldest deadline first."""
        now = self.clock()
        late = [
            row.record
            for row in self._runs.values()
            if not row.record.finished
            and row.record.deadline_at is not None
            and row.record.deadline_at < now
        ]
        return sorted(late, key=lambda r: r.deadline_at or now)[:limit]

    async def mark_published(self, delivery_id: str, at: datetime) -> None:
        """Record that a pending delivery's message was published again, consumable ``at``."""
        delivery = self._deliveries.get(delivery_id)
        if delivery is not None and delivery.status == "pending":
            self._deliveries[delivery_id] = dataclasses.replace(delivery, published_at=at)

    async def take_due(
        self,
        *,
        stale_before: datetime,
        served: Collection[StepKey],
        idle: Collection[StepKey],
        limit: int = 200,
    ) -> list[DueDelivery]:
        """Deliveries to publish again, stamped published (see ``RunStore.take_due``)."""
        now = self.clock()
        served, idle = set(served), set(idle)
        found: list[tuple[DeliveryRecord, str]] = []
        for delivery_id in self._open:
            delivery = self._deliveries[delivery_id]
            key = (self._runs[delivery.run_id].record.workflow_name, delivery.step)
            if key in served and needs_republish(delivery, now, stale_before, idle=key in idle):
                found.append((delivery, key[0]))
        found.sort(key=lambda pair: pair[0].published_at or stale_before)
        due = []
        for delivery, workflow_name in found[:limit]:
            stamped = dataclasses.replace(delivery, published_at=now)
            self._deliveries[delivery.delivery_id] = stamped
            due.append(DueDelivery(stamped, workflow_name))
        return due

    # -- stream

    async def read_stream(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StreamEntry]:
        """Stream entries with ``seq > after_seq`` in order (seq n is at index n - 1)."""
        stream = self._row(run_id).stream
        end = len(stream) if limit is None else min(len(stream), max(after_seq, 0) + limit)
        return stream[max(after_seq, 0) : end]

    async def read_streams(
        self, cursors: Mapping[str, int], limit: int = 1000
    ) -> dict[str, list[StreamEntry]]:
        """New entries of several runs (unknown runs are left out), ``limit`` in all."""
        found: dict[str, list[StreamEntry]] = {}
        left = limit
        for run_id, after_seq in cursors.items():
            row = self._runs.get(run_id) or self._released.get(run_id)
            if row is None or left <= 0:
                continue
            entries = row.stream[max(after_seq, 0) : max(after_seq, 0) + left]
            if entries:
                found[run_id] = entries
                left -= len(entries)
        return found

    async def close(self) -> None:
        """Nothing to release; the data stays readable."""

    # -- internals used by the transaction

    def _row(self, run_id: str) -> RunRow:
        row = self._runs.get(run_id) or self._released.get(run_id)
        if row is None:
            raise RunNotFoundError(run_id)
        return row

    @asynccontextmanager
    async def _hold(self, run_id: str) -> AsyncIterator[None]:
        # Slots are dropped when nobody holds or waits, so idle runs cost nothing.
        slot = self._locks.get(run_id)
        if slot is None:
            slot = self._locks[run_id] = _LockSlot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._locks[run_id]

    def _live_running(self, row: RunRow, delivery: DeliveryRecord, now: datetime) -> int:
        count = 0
        for other_id in row.open_ids:
            other = self._deliveries[other_id]
            if (
                other_id != delivery.delivery_id
                and other.step == delivery.step
                and other.status == "running"
                and not lease_expired(other, now)
            ):
                count += 1
        return count

    def _insert_deliveries(
        self, row: RunRow, deliveries: Sequence[NewDelivery], now: datetime
    ) -> None:
        run_id = row.record.run_id
        for new in deliveries:
            if new.delivery_id in self._deliveries:
                continue  # deterministic id: a replayed completion inserts nothing
            self._deliveries[new.delivery_id] = _new_delivery_record(run_id, new, now)
            row.delivery_ids.append(new.delivery_id)
            row.open_ids[new.delivery_id] = None
            self._open[new.delivery_id] = None

    def _close_delivery(self, record: DeliveryRecord) -> None:
        self._deliveries[record.delivery_id] = record
        if record.status not in OPEN_DELIVERY_STATUSES:
            self._runs[record.run_id].open_ids.pop(record.delivery_id, None)
            self._open.pop(record.delivery_id, None)


def _new_delivery_record(run_id: str, new: NewDelivery, now: datetime) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=new.delivery_id,
        run_id=run_id,
        step=new.step,
        event=new.event,
        status="pending",
        attempt=0,
        journal_id=new.journal_id or new.delivery_id,
        parent_id=new.parent_id,
        extra=new.extra,
        error=None,
        not_before=new.not_before,
        lease_expires_at=None,
        published_at=first_published_at(now, new.not_before),
        created_at=now,
        updated_at=now,
    )
