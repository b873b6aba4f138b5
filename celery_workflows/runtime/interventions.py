"""Transitions from outside a step, as pure decisions: an event sent into a run, a
cancel, a deadline passed, a delivery this process cannot run. See :mod:`.transitions`
for the shape (what a locked transaction sees in, a :class:`~.writes.Decision` out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..events import (
    Event,
    InputRequiredEvent,
    UnhandledEvent,
    WorkflowCancelledEvent,
    WorkflowTimedOutEvent,
)
from ..store.base import DeliveryRecord, RunRecord, RunStore
from .binding import Binding
from .codec import Codec
from .routing import Output
from .writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    FinishDelivery,
    SetMeta,
    SetStatus,
    Write,
    copy_meta,
    transact,
)


def on_event_sent_in(
    binding: Binding,
    run: RunRecord,
    open_deliveries: Sequence[DeliveryRecord],
    event: Event,
    step: str | None,
    parent_id: str,
) -> Decision:
    """An event sent into a run from outside: it resumes waiters or becomes deliveries.
    As upstream, one that nothing takes is reported on the stream (internal), except a
    human-in-the-loop request."""
    if run.finished:
        return Decision()
    meta = copy_meta(run.meta)
    routed = binding.router.route(meta, [Output(event, step)], parent_id)
    writes: list[Write] = [SetMeta(meta), AddDeliveries(tuple(routed.deliveries))]
    if routed.deliveries and run.status == "waiting":
        writes.append(SetStatus("running"))
    lost = [e for e in routed.unhandled if not isinstance(e, InputRequiredEvent)]
    idle = not routed.deliveries and not open_deliveries
    for ev in lost:
        writes.append(
            AppendStream(binding.codec.encode_event(unhandled_event(ev, step, idle)), None)
        )
    return Decision(tuple(writes), publish=tuple(routed.deliveries))


def unhandled_event(event: Event, step: str | None, idle: bool) -> UnhandledEvent:
    """The stream's record of an event that nothing in the run took."""
    cls = type(event)
    return UnhandledEvent(
        event_type=cls.__name__,
        qualified_name=f"{cls.__module__}.{cls.__name__}",
        step_name=step,
        idle=idle,
    )


@dataclass(frozen=True)
class TimedOut:
    """The ending of a run past its deadline (after ``timeout`` seconds)."""

    timeout: float


Ending = Literal["cancelled"] | TimedOut


def on_halt(
    run: RunRecord, open_deliveries: Sequence[DeliveryRecord], ending: Ending, codec: Codec
) -> Decision:
    """End a still-going run: cancelled by a user, or failed past its deadline (as
    upstream's WorkflowTimeoutError, naming the steps still active). ``answer``: ended."""
    if run.finished:
        return Decision(answer=False)
    if ending == "cancelled":
        event: Event = WorkflowCancelledEvent()
        error: dict[str, Any] = {"kind": "cancelled"}
        status: Literal["cancelled", "failed"] = "cancelled"
    else:
        active = sorted({d.step for d in open_deliveries if d.status == "running"})
        info = "Currently active steps: " + ", ".join(active) if active else "No steps active"
        message = f"Operation timed out after {ending.timeout} seconds. {info}"
        event = WorkflowTimedOutEvent(timeout=ending.timeout, active_steps=active)
        error = {"kind": "timeout", "message": message}
        status = "failed"
    writes = (
        AppendStream(codec.encode_event(event), f"{run.run_id}:halt"),
        SetStatus(status, error=error),
    )
    return Decision(writes, finished=True, answer=True)


def refuse_unknown_workflow(delivery: DeliveryRecord, name: str) -> Decision:
    """A delivery of a workflow this process does not know: the run fails (no codec)."""
    message = (
        f"run {delivery.run_id!r} step {delivery.step!r}: workflow {name!r} is not "
        "registered in this worker process (is its module imported by the worker?)"
    )
    error = {"kind": "invalid", "message": message}
    writes = (FinishDelivery(delivery.fence, "failed", error), SetStatus("failed", error=error))
    return Decision(writes, finished=True, answer=message)


async def halt(store: RunStore, codec: Codec, run_id: str, ending: Ending) -> bool:
    """End a still-going run in one locked transaction (the shell of :func:`on_halt`,
    for the engine and for operators' tools). False if it had ended already."""
    decision = await transact(
        store,
        run_id,
        None,
        lambda run, open_: on_halt(run, open_, ending, codec),
        reads_open=lambda run: isinstance(ending, TimedOut) and not run.finished,
    )
    return bool(decision.answer)


__all__ = [
    "Ending",
    "TimedOut",
    "halt",
    "on_event_sent_in",
    "on_halt",
    "refuse_unknown_workflow",
    "unhandled_event",
]
