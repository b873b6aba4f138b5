"""The writes of one locked transaction, as values, and the shell that applies them.

The run's transitions (:mod:`.transitions`) are pure: they read the run as locked and
return a :class:`Decision`, the list of writes in the :class:`RunTxn` vocabulary plus what
to do after the commit. :func:`apply` is the whole of the I/O in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..events import Event
from ..store.base import DeliveryRecord, Fence, NewDelivery, RunRecord, RunStatus, RunStore, RunTxn


@dataclass(frozen=True)
class AppendStream:
    """Append an encoded event to the run's stream (``key`` de-duplicates re-runs)."""

    payload: Any
    key: str | None


@dataclass(frozen=True)
class SetMeta:
    """Replace the run's meta (waiters, joins, fan-in and collect buffers, recoveries)."""

    meta: dict[str, Any]


@dataclass(frozen=True)
class AddDeliveries:
    """Insert deliveries (an id that exists already is left as it is)."""

    deliveries: tuple[NewDelivery, ...]


@dataclass(frozen=True)
class FinishDelivery:
    """Close the fenced delivery."""

    fence: Fence
    status: Literal["done", "failed", "cancelled"]
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class RescheduleDelivery:
    """Put the fenced delivery back to pending, due at ``not_before`` (a retry)."""

    fence: Fence
    not_before: datetime
    extra: dict[str, Any]


@dataclass(frozen=True)
class SetStatus:
    """Move the run to ``status`` (a terminal one cancels its open deliveries)."""

    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class PutJournal:
    """Record mark ``index`` of ``journal_id`` with the value a re-run must get back."""

    journal_id: str
    index: int
    result: Any = None


#: One write of a locked transaction.
Write = (
    AppendStream
    | SetMeta
    | AddDeliveries
    | FinishDelivery
    | RescheduleDelivery
    | SetStatus
    | PutJournal
)


@dataclass(frozen=True)
class Decision:
    """What one transition decided: its writes, then what follows the commit.

    ``publish``: deliveries to hand to the dispatcher after the commit (the outbox).
    ``finished``: the run ended in this transaction. ``stop``: the StopEvent it ended
    with, as the step returned it. ``answer``: a value for the caller of the transition.
    """

    writes: tuple[Write, ...] = ()
    publish: tuple[NewDelivery | DeliveryRecord, ...] = ()
    finished: bool = False
    stop: Event | None = None
    answer: Any = None


def copy_meta(value: Any) -> Any:
    """Copy meta's dicts and lists (decisions change a copy: the in-memory store hands
    out its committed meta), sharing the payloads inside them."""
    if isinstance(value, dict):
        return {k: copy_meta(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_meta(v) for v in value]
    return value


async def apply(txn: RunTxn, writes: Sequence[Write]) -> None:
    """Apply ``writes`` to ``txn`` in order (stream sequence numbers follow it)."""
    for w in writes:
        if isinstance(w, AppendStream):
            await txn.append_stream(w.payload, w.key)
        elif isinstance(w, SetMeta):
            txn.set_meta(w.meta)
        elif isinstance(w, AddDeliveries):
            if w.deliveries:
                txn.add_deliveries(w.deliveries)
        elif isinstance(w, FinishDelivery):
            txn.finish_delivery(w.fence, w.status, w.error)
        elif isinstance(w, RescheduleDelivery):
            txn.reschedule_delivery(w.fence, w.not_before, w.extra)
        elif isinstance(w, SetStatus):
            txn.set_status(w.status, result=w.result, error=w.error)
        else:
            txn.journal_put(w.journal_id, w.index, w.result)


#: A pure decision over what a locked transaction sees: the run and its open deliveries.
Decide = Callable[[RunRecord, Sequence[DeliveryRecord]], Decision]


async def transact(
    store: RunStore,
    run_id: str,
    fence: Fence | None,
    decide: Decide,
    reads_open: Callable[[RunRecord], bool] | bool = False,
) -> Decision:
    """One locked transaction: read the run, ``decide``, apply its writes, commit.

    The run's open deliveries are read only when ``reads_open`` says the decision needs
    them (a read less on the hot path). Raises what the store raises; nothing is written
    then.
    """
    async with store.locked(run_id, fence) as txn:
        run = txn.run
        wanted = reads_open(run) if callable(reads_open) else reads_open
        open_deliveries = await txn.open_deliveries() if wanted else []
        decision = decide(run, open_deliveries)
        await apply(txn, decision.writes)
    return decision


__all__ = [
    "AddDeliveries",
    "AppendStream",
    "Decide",
    "Decision",
    "FinishDelivery",
    "PutJournal",
    "RescheduleDelivery",
    "SetMeta",
    "SetStatus",
    "Write",
    "apply",
    "copy_meta",
    "transact",
]
