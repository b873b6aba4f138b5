"""``wait_for_event``: the waiter record, its timeout delivery, and the rules about both.

A step that waits ends its invocation; what it waits for is a *waiter* in the run's meta
(``meta["waiters"]``), and a wait with a timeout also gets a *timeout delivery* of the same
step, due when the wait would time out. That delivery is an ordinary delivery row with one
explicit mark (:class:`WaitTimeout`, kept in its ``extra``); every rule about it is here.

Pure: no I/O. The functions that change meta take a copy the caller owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..store.base import DeliveryRecord, NewDelivery, RunRecord
from .codec import Codec
from .retained import take_retained
from .routing import child_id, resume_delivery, waiter_matches
from .writes import Decision, FinishDelivery, SetMeta, copy_meta

#: The key of a timeout delivery's mark in its ``extra``.
_TIMEOUT_KEY = "timeout_of"


@dataclass(frozen=True)
class WaitTimeout:
    """The mark of a timeout delivery: which waiter (of which invocation) it times out."""

    waiter_id: str
    journal_id: str

    @staticmethod
    def of(delivery: DeliveryRecord | NewDelivery) -> WaitTimeout | None:
        """The mark of ``delivery`` if it is a wait's timeout, else None."""
        mark = delivery.extra.get(_TIMEOUT_KEY)
        if not mark:
            return None
        return WaitTimeout(str(mark["waiter_id"]), str(mark["journal_id"]))

    def matches(self, waiter: dict[str, Any]) -> bool:
        """True for the waiter this timeout belongs to."""
        return bool(
            waiter["waiter_id"] == self.waiter_id and waiter["journal_id"] == self.journal_id
        )


def waiter_record(
    *,
    waiter_id: str,
    step: str,
    journal_id: str,
    delivery_id: str,
    event: Any,
    waiting_for: str,
    requirements: dict[str, Any] | None = None,
    resolved: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    timeout: float | None = None,
    default_id: bool = False,
) -> dict[str, Any]:
    """A waiter as meta keeps it (JSON-compatible when the codec is JSON).

    ``event`` is the encoded event the waiting step runs on again; ``resolved`` holds the
    answers of earlier waits of the same invocation, passed again on every re-run.
    """
    return {
        "waiter_id": waiter_id,
        "step": step,
        "journal_id": journal_id,
        "delivery_id": delivery_id,
        "event": event,
        "waiting_for": waiting_for,
        "requirements": requirements or {},
        "resolved": resolved or {},
        "extra": {k: v for k, v in (extra or {}).items() if k not in ("resolved", _TIMEOUT_KEY)},
        "timeout": timeout,
        "default_id": default_id,
    }


def timed_out_waiter_id(delivery: DeliveryRecord) -> str | None:
    """The waiter id a re-run of ``delivery`` must raise TimeoutError for, if any."""
    mark = WaitTimeout.of(delivery)
    return mark.waiter_id if mark is not None else None


def timeout_delivery(
    delivery: DeliveryRecord, waiter: dict[str, Any], now: datetime
) -> NewDelivery:
    """Re-runs the waiting step when the wait times out (dropped if the wait ended)."""
    due = now + timedelta(seconds=float(waiter["timeout"]))
    mark = {"waiter_id": waiter["waiter_id"], "journal_id": waiter["journal_id"]}
    return NewDelivery(
        child_id(delivery.delivery_id, f"timeout/{waiter['waiter_id']}"),
        delivery.step,
        delivery.event,
        parent_id=delivery.delivery_id,
        journal_id=waiter["journal_id"],
        not_before=due,
        # The answers of earlier waits come along: the re-run passes them again.
        extra={
            **waiter.get("extra", {}),
            "resolved": waiter.get("resolved", {}),
            _TIMEOUT_KEY: mark,
        },
    )


def register_waiter(meta: dict[str, Any], waiter: dict[str, Any]) -> None:
    """Add ``waiter`` to meta, replacing an earlier record of the same wait."""
    mark = WaitTimeout(waiter["waiter_id"], waiter["journal_id"])
    waiters = meta.setdefault("waiters", [])
    waiters[:] = [w for w in waiters if not mark.matches(w)]
    waiters.append(waiter)


def answer_from_retained(
    meta: dict[str, Any], waiter: dict[str, Any], codec: Codec, seed: str
) -> NewDelivery | None:
    """When ``waiter`` is registered: if an event that answers it came before (retained,
    see :mod:`.retained`), take the oldest, remove the waiter again and return the
    delivery that resumes its step with it (id derived from ``seed``); else None."""
    answer = take_retained(
        meta,
        waiter["waiting_for"],
        lambda payload: waiter_matches(waiter, codec.decode_event(payload)),
    )
    if answer is None:
        return None
    mark = WaitTimeout(waiter["waiter_id"], waiter["journal_id"])
    meta["waiters"] = [w for w in meta.get("waiters", []) if not mark.matches(w)]
    return resume_delivery(waiter, answer, seed)


def release_timed_out_waiter(meta: dict[str, Any], delivery: DeliveryRecord) -> None:
    """In the completion of a timeout delivery: remove the waiter it marked."""
    if WaitTimeout.of(delivery) is not None and meta.get("waiters"):
        meta["waiters"] = [
            w for w in meta["waiters"] if w.get("timing_out") != delivery.delivery_id
        ]


def mark_timing_out(meta: dict[str, Any], delivery: DeliveryRecord) -> bool | None:
    """When a timeout delivery is claimed: mark its waiter as timing out in ``meta``.

    None: the wait already ended (the delivery has nothing to do). False: the waiter
    already carries this delivery's mark (an earlier attempt died after marking). True:
    meta changed. A marked waiter is resumed by no event; the delivery's completion
    removes it.
    """
    mark = WaitTimeout.of(delivery)
    assert mark is not None, "only a timeout delivery times out a waiter"
    waiters = [dict(w) for w in meta.get("waiters", [])]
    match = [w for w in waiters if mark.matches(w)]
    if not match:
        return None
    if all(w.get("timing_out") == delivery.delivery_id for w in match):
        return False
    for w in match:
        w["timing_out"] = delivery.delivery_id
    meta["waiters"] = waiters
    return True


def on_timeout_claimed(run: RunRecord, delivery: DeliveryRecord) -> Decision:
    """A wait's timeout delivery was claimed. ``answer`` True: the wait had ended, the
    delivery is done. Else its waiter is marked timing out and the step runs again."""
    meta = copy_meta(run.meta)
    marked = mark_timing_out(meta, delivery)
    if marked is None:
        return Decision((FinishDelivery(delivery.fence, "done"),), answer=True)
    return Decision((SetMeta(meta),) if marked else (), answer=False)


def is_pending_timeout(delivery: DeliveryRecord, meta: dict[str, Any]) -> bool:
    """True for a timeout delivery whose wait is still open (not a work item yet)."""
    if WaitTimeout.of(delivery) is None:
        return False
    timing_out = {w.get("timing_out") for w in meta.get("waiters") or []}
    return delivery.delivery_id not in timing_out


__all__ = [
    "WaitTimeout",
    "answer_from_retained",
    "is_pending_timeout",
    "mark_timing_out",
    "on_timeout_claimed",
    "register_waiter",
    "release_timed_out_waiter",
    "timed_out_waiter_id",
    "timeout_delivery",
    "waiter_record",
]
