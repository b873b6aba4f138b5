"""A run and its step attempts as the run page draws them: pure shaping of store records.

The timeline is read from the run store, not from the stream: a delivery row knows its
step, status, attempt, retry count, last error and when it was queued and last changed,
whether or not anyone streamed internal events while the run went on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._serializers import record_name
from ..events import Event
from ..store.base import DeliveryRecord, RunRecord

__all__ = ["delivery_entry", "error_summary", "event_name", "run_entry", "timeline"]

#: Longest error message the page is sent (a traceback stays in the store).
MAX_MESSAGE = 2000


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def event_name(payload: Any) -> str:
    """The class name of a stored event: a live event (in-memory store) or its JSON
    record ``{"qualified_name", "value"}`` (SQL store). Nothing is imported or rebuilt."""
    if isinstance(payload, Event):
        return record_name(type(payload)).rsplit(".", 1)[-1]
    if isinstance(payload, dict):
        name = payload.get("qualified_name") or payload.get("type")
        if isinstance(name, str) and name:
            return name.rsplit(".", 1)[-1]
    return "Event"


def error_summary(error: Any) -> dict[str, str] | None:
    """``{"type", "message"}`` of a stored error (an exception's dump or the engine's
    reason); the live exception an in-memory store keeps is never sent."""
    if not isinstance(error, dict):
        return None
    kind = error.get("exception_type") or error.get("kind") or "error"
    message = error.get("exception_message") or error.get("message") or error.get("reason")
    return {
        "type": str(kind).rsplit(".", 1)[-1],
        "message": str(message or "")[:MAX_MESSAGE],
    }


def _retry(extra: dict[str, Any]) -> dict[str, Any] | None:
    retry = extra.get("retry")
    if not isinstance(retry, dict) or not retry.get("count"):
        return None
    return {
        "count": int(retry["count"]),
        "first_failed_at": retry.get("first_failed_at"),
        "last_failed_at": retry.get("last_failed_at"),
        "last_error": error_summary(retry.get("last_error")),
    }


def delivery_entry(delivery: DeliveryRecord) -> dict[str, Any]:
    """One step delivery (one event for one step, all its attempts) for the timeline."""
    timeout_of = delivery.extra.get("timeout_of")
    return {
        "delivery_id": delivery.delivery_id,
        "parent_id": delivery.parent_id,
        "step": delivery.step,
        "event": event_name(delivery.event),
        "status": delivery.status,
        "attempt": delivery.attempt,
        "created_at": _iso(delivery.created_at),
        "updated_at": _iso(delivery.updated_at),
        "not_before": _iso(delivery.not_before),
        "lease_expires_at": _iso(delivery.lease_expires_at),
        # A wait_for_event timeout: the delivery re-runs the waiting step when it is due.
        "wait_timeout": isinstance(timeout_of, dict),
        "retry": _retry(delivery.extra),
        "error": error_summary(delivery.error),
    }


def _waiters(run: RunRecord) -> list[dict[str, Any]]:
    found = run.meta.get("waiters") if isinstance(run.meta, dict) else None
    return [
        {
            "step": str(w.get("step", "")),
            "waiting_for": str(w.get("waiting_for", "")).rsplit(".", 1)[-1],
            "delivery_id": w.get("delivery_id"),
            "timeout": w.get("timeout"),
        }
        for w in found or ()
        if isinstance(w, dict)
    ]


def run_entry(run: RunRecord, name: str) -> dict[str, Any]:
    """The run row as the page lists it (``status`` keeps ``waiting``, unlike the
    protocol's handler record)."""
    return {
        "run_id": run.run_id,
        "workflow_name": name,
        "status": run.status,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "deadline_at": _iso(run.deadline_at),
        "error": error_summary(run.error),
    }


def timeline(run: RunRecord, name: str, deliveries: Sequence[DeliveryRecord]) -> dict[str, Any]:
    """The body of ``GET /handlers/{id}/timeline``: the run, its open waits and every
    delivery in creation order."""
    return {
        "run": {**run_entry(run, name), "waiters": _waiters(run)},
        "deliveries": [delivery_entry(d) for d in deliveries],
    }
