"""The run store seam: records and the :class:`RunStore` protocol.

The database is the source of truth for a run. A store keeps three things per run: the
run row (status, state, meta, result), its deliveries (one event for one step), and its
event stream. Every write happens in one transaction that holds the run row's lock
(``SELECT ... FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite; an ``asyncio.Lock`` for the
in-memory store, which is the whole database there).

Payloads (state, events, meta values) are opaque to the store. The runtime hands the
in-memory store live Python objects and the SQL stores JSON-compatible values; a store
never imports or resolves user types.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from .changes import ChangeNotifier

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled"]
DeliveryStatus = Literal["pending", "running", "done", "failed", "cancelled"]
ClaimOutcome = Literal[
    "claimed", "done", "not_due", "busy", "leased", "run_finished", "missing", "wrong_workflow"
]

TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
OPEN_DELIVERY_STATUSES: frozenset[str] = frozenset({"pending", "running"})


def utcnow() -> datetime:
    """Timezone-aware now; every ``*_at`` value in a store is UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fence:
    """Identifies one attempt of one delivery; writes that carry it are checked."""

    delivery_id: str
    attempt: int


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to insert: one event for one step of one run.

    ``delivery_id`` is deterministic (derived from the parent delivery and the output
    index), so a replayed completion inserts the same ids and the insert is a no-op.
    ``journal_id`` names the journal whose marks make state edits exactly-once; it is the
    delivery's own id, or, for a step resumed after ``wait_for_event``, the id of the
    delivery it resumes (so edits made before the wait are not applied again).
    """

    delivery_id: str
    step: str
    event: Any
    parent_id: str | None = None
    journal_id: str | None = None
    not_before: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewRun:
    """A run to create together with its first deliveries.

    ``start_fingerprint`` digests what the run starts with (its start event); given, a
    create of an existing run id checks that it is the same start (see ``create_run``).
    """

    run_id: str
    workflow_name: str
    state: Any
    meta: dict[str, Any]
    code_version: str = ""
    idempotency_key: str | None = None
    deadline_at: datetime | None = None
    start_fingerprint: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A run row as committed."""

    run_id: str
    workflow_name: str
    status: RunStatus
    state: Any
    meta: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    code_version: str
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    start_fingerprint: str | None = None

    @property
    def finished(self) -> bool:
        """True once the run is completed, failed or cancelled."""
        return self.status in TERMINAL_RUN_STATUSES


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery row as committed. ``attempt`` is the fencing token (0 = never claimed)."""

    delivery_id: str
    run_id: str
    step: str
    event: Any
    status: DeliveryStatus
    attempt: int
    journal_id: str
    parent_id: str | None
    extra: dict[str, Any]
    error: dict[str, Any] | None
    not_before: datetime | None
    lease_expires_at: datetime | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def fence(self) -> Fence:
        """The fence of this (current) attempt."""
        return Fence(self.delivery_id, self.attempt)


@dataclass(frozen=True)
class RunQuery:
    """Which runs :meth:`RunStore.list_runs` returns: newest first, one page.

    ``cursor`` is ``(created_at, run_id)`` of the last run of the previous page; the next
    page holds the runs after it (keyset paging: stable while runs are added).
    """

    statuses: tuple[RunStatus, ...] | None = None
    workflow_name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 100
    cursor: tuple[datetime, str] | None = None


#: A step of a workflow: ``(workflow_name, step_name)``.
StepKey = tuple[str, str]


@dataclass(frozen=True)
class DueDelivery:
    """A delivery to publish again, with the workflow of its run (for the task name)."""

    delivery: DeliveryRecord
    workflow_name: str


@dataclass(frozen=True)
class Claim:
    """Result of :meth:`RunStore.claim`: the delivery with its new attempt, or why not."""

    outcome: ClaimOutcome
    delivery: DeliveryRecord | None = None


@dataclass(frozen=True)
class StreamEntry:
    """One event written to a run's stream; ``seq`` starts at 1 and has no gaps."""

    run_id: str
    seq: int
    event: Any
    created_at: datetime


@dataclass(frozen=True)
class JournalMark:
    """Proof that edit ``index`` of ``journal_id`` committed; ``result`` is what it returned."""

    journal_id: str
    index: int
    result: Any = None


class RunTxn(Protocol):
    """One transaction that holds the run row's lock. Commit on clean exit, else roll back.

    Reads see the row as locked; writes take effect at commit only.
    """

    @property
    def run(self) -> RunRecord:
        """The run row as read under the lock."""
        ...

    async def journal_get(self, journal_id: str, index: int) -> JournalMark | None:
        """The mark of edit ``index`` of ``journal_id``, if it committed."""
        ...

    def journal_put(self, journal_id: str, index: int, result: Any = None) -> None:
        """Record that edit ``index`` of ``journal_id`` is part of this transaction."""
        ...

    def set_state(self, state: Any) -> None:
        """Replace the run's state payload."""
        ...

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Replace the run's meta (waiters, collect buffers, ...)."""
        ...

    def set_status(
        self, status: RunStatus, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """Move the run to ``status``; a terminal status cancels its open deliveries."""
        ...

    def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> None:
        """Insert deliveries; an id that already exists is left as it is."""
        ...

    def finish_delivery(
        self,
        fence: Fence,
        status: Literal["done", "failed", "cancelled"],
        error: dict[str, Any] | None = None,
    ) -> None:
        """Close the fenced delivery (checked at call time, raises FencedOutError)."""
        ...

    def reschedule_delivery(
        self, fence: Fence, not_before: datetime, extra: dict[str, Any]
    ) -> None:
        """Put the fenced delivery back to pending, due at ``not_before`` (a retry)."""
        ...

    async def append_stream(self, event: Any, dedupe_key: str | None = None) -> int:
        """Append to the run's stream; a repeated ``dedupe_key`` returns the first seq."""
        ...

    async def open_deliveries(self) -> list[DeliveryRecord]:
        """The run's pending and running deliveries."""
        ...


class RunStore(Protocol):
    """Storage of runs, deliveries and streams. See the module docstring."""

    #: What the store keeps: ``"json"`` (JSON-compatible values, SQL) or ``"live"``
    #: (the objects as given, in memory). It picks the codec of every workflow bound to it.
    payloads: Literal["json", "live"]
    #: True when the store's coroutines finish without suspending (no I/O): sync callers
    #: may drive them on their own thread, even inside a running loop.
    never_suspends: bool

    async def create_run(
        self, run: NewRun, deliveries: Sequence[NewDelivery]
    ) -> tuple[RunRecord, bool]:
        """Create the run and its deliveries in one transaction.

        Returns ``(record, True)``; if ``run.run_id`` (or its idempotency key) already
        exists, returns the existing record and False and writes nothing. When ``run``
        has a ``start_fingerprint``, the existing run must be of the same workflow and,
        if it has a fingerprint, the same one, else RunConflictError is raised (checked
        in the same transaction; see :func:`~.memory.check_same_start`).
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord:
        """The committed run row (no lock). Raises RunNotFoundError."""
        ...

    def locked(
        self, run_id: str, fence: Fence | None = None
    ) -> AbstractAsyncContextManager[RunTxn]:
        """Lock the run row for one transaction.

        With a fence, the delivery's current attempt must equal ``fence.attempt`` and its
        status be ``running``, else FencedOutError is raised and nothing is written.
        """
        ...

    async def claim(
        self,
        delivery_id: str,
        *,
        lease_seconds: float,
        max_running: int | None = None,
        workflow_name: str | None = None,
    ) -> Claim:
        """Start a new attempt of a delivery.

        Claims a pending delivery that is due, or a running one whose lease expired
        (its attempt is presumed dead). A claim does not wait for the run lock (a step
        may start while another holds an ``edit_state()``); it serializes with fenced
        writes of the same delivery instead, so a superseded attempt's write is refused.
        ``max_running`` caps the running deliveries of the same step in the same run
        (``num_workers``); over it the outcome is ``busy``. ``workflow_name`` is what the
        message says the run is; a run of another workflow gives ``wrong_workflow`` and
        nothing changes (another workflow's code must never run on a run).
        """
        ...

    async def extend_lease(self, fence: Fence, *, lease_seconds: float) -> bool:
        """Extend the lease of a running attempt; False if it was superseded."""
        ...

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord:
        """The committed delivery row. Raises DeliveryNotFoundError."""
        ...

    async def list_deliveries(
        self, run_id: str, statuses: Sequence[DeliveryStatus] | None = None
    ) -> list[DeliveryRecord]:
        """A run's deliveries in creation order, optionally filtered by status."""
        ...

    async def read_stream(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StreamEntry]:
        """Stream entries with ``seq > after_seq`` in order."""
        ...

    async def read_streams(
        self, cursors: Mapping[str, int], limit: int = 1000
    ) -> dict[str, list[StreamEntry]]:
        """Entries of several runs at once: for each ``run_id -> after_seq`` of ``cursors``,
        its entries with ``seq > after_seq`` in order, at most ``limit`` in all.

        One read serves every stream a process follows (the web tier's fan-out), so it
        costs one statement, not one per run. A run without new entries, or unknown (it
        was deleted), is absent from the result; nothing raises for it.
        """
        ...

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first (``created_at``, then ``run_id``)."""
        ...

    async def delete_runs(self, *, finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished runs last updated before ``finished_before``, with
        their deliveries, journal and stream; return how many were deleted."""
        ...

    async def delete_run(self, run_id: str) -> bool:
        """Delete one finished run with its deliveries, journal and stream.

        Returns False, and deletes nothing, when the run is unknown or not finished.
        """
        ...

    async def expired_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs still running or waiting past their ``deadline_at`` (the workflow timeout),
        oldest deadline first: the sweeper fails them with WorkflowTimeoutError."""
        ...

    async def mark_published(self, delivery_id: str, at: datetime) -> None:
        """Record that a pending delivery's message was published again, consumable ``at``
        (a delayed message): the sweeper counts its age from then. Else a no-op."""
        ...

    async def take_due(
        self,
        *,
        stale_before: datetime,
        served: Collection[StepKey],
        idle: Collection[StepKey],
        limit: int = 200,
    ) -> list[DueDelivery]:
        """Deliveries whose message is presumed lost, stamped as published in the same
        transaction, oldest first; the caller publishes them after this returns.

        - running, lease expired, not published since it expired: its attempt died; only
          steps in ``served`` (the caller's workflows); again after that, like a pending
          one;
        - pending, published (or due) before ``stale_before``: only steps in ``idle``,
          whose queue the caller found empty after that time (a message may still wait
          in a queue that is not).

        Stamping in the selecting transaction (rows locked, SKIP LOCKED) hands each
        delivery to one sweeper; sweepers of one database take turns (a lock).
        """
        ...

    def watch(self) -> ChangeNotifier:
        """Where callers waiting on runs subscribe (the wake-up seam: ``changes.py``)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
