"""Events kept for a ``wait_for_event`` that is not registered yet.

A step that waits is registered as a waiter only when its invocation ends (in the
completion's transaction), so an answer can arrive before it: a caller answering the
``InputRequiredEvent`` a step streamed just before its wait, or an event sent right after
the run started. Such an event matches no accepting step and no waiter when it comes;
instead of being lost it is *retained* in the run's meta (``meta["retained"]``, oldest
first), and a wait registered later takes the oldest retained event that answers it, in
the same transaction (:func:`.waits.answer_from_retained`).

Bounded: a run keeps the newest :data:`RETAINED_LIMIT` such events; older ones are
dropped, as every event nothing takes was before. Retained events end with the run and
are not part of a snapshot (``ctx.to_dict()`` has no place for them upstream).

Pure: no I/O. The functions change the meta copy the caller owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..events import Event, InputRequiredEvent
from .codec import event_type_name

#: How many unclaimed events a run keeps (the newest): enough for any human-in-the-loop
#: exchange, small enough that a run flooded with unhandled events keeps a small row.
RETAINED_LIMIT = 100

_KEY = "retained"


def retain(meta: dict[str, Any], event: Event, payload: Any) -> None:
    """Keep ``event`` (encoded as ``payload``), which nothing took, for a later wait.

    A human-in-the-loop request is not kept: it is meant for the caller (the stream),
    and no step waits for one.
    """
    if isinstance(event, InputRequiredEvent):
        return
    kept: list[dict[str, Any]] = meta.setdefault(_KEY, [])
    kept.append({"type": event_type_name(event), "event": payload})
    del kept[:-RETAINED_LIMIT]


def take_retained(
    meta: dict[str, Any], type_name: str, answers: Callable[[Any], bool]
) -> Any | None:
    """Remove and return the oldest retained payload of ``type_name`` that ``answers``
    accepts; None when there is none."""
    kept: list[dict[str, Any]] = meta.get(_KEY) or []
    for i, entry in enumerate(kept):
        if entry["type"] == type_name and answers(entry["event"]):
            del kept[i]
            if not kept:
                meta.pop(_KEY, None)
            return entry["event"]
    return None


def retained_count(meta: dict[str, Any]) -> int:
    """How many events ``meta`` retains."""
    return len(meta.get(_KEY) or [])


__all__ = ["RETAINED_LIMIT", "retain", "retained_count", "take_retained"]
