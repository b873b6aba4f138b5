"""The run's transitions, as pure decisions.

Each function reads what a locked transaction sees (the run row, and where the decision
depends on them its open deliveries) and what happened (a step ended, failed, asked for a
collect answer; a wait timed out; an event came in; the run is cancelled or late) and
returns a :class:`~.writes.Decision`: the writes of that one transaction and what follows
its commit. No I/O and no clock: ``now`` is an argument. The shell that opens the
transaction and applies the writes is :mod:`.completion` (and the engine for the rest).

Table of the transitions: ``docs/architecture.md``, "The run".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import WorkflowRuntimeError
from ..events import (
    Event,
    InputRequiredEvent,
    StepState,
    StepStateChanged,
    StopEvent,
)
from ..store.base import DeliveryRecord, NewDelivery, RunRecord
from .binding import Binding
from .failures import UNSTORABLE, on_step_failed, unstorable_output
from .routing import Output, child_id, delivery_scope
from .sends import Sent, completed_writes, route_sent
from .streams import open_stream, settle, streams_of
from .waits import (
    WaitTimeout,
    answer_from_retained,
    register_waiter,
    release_timed_out_waiter,
    timeout_delivery,
)
from .writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    FinishDelivery,
    SetMeta,
    SetStatus,
    Write,
    copy_meta,
)


@dataclass(frozen=True)
class StepEnd:
    """How one invocation of a step ended: what it returned, waited for (a waiter record
    and the event to stream for it) or raised, and what it sent since its last await
    (what it sent before is committed already)."""

    event: Event
    result: Any = None
    #: Events sent and not yet committed when the step ended (numbered in its journal).
    sent: tuple[tuple[int, Output], ...] = ()
    #: The invocation's journal (see ``state.invocation_journal``); ``journal_fresh``: no
    #: mark of it can exist yet (so none needs reading).
    journal_id: str = ""
    journal_fresh: bool = False
    waiter: dict[str, Any] | None = None
    waiter_event: Event | None = None
    error: BaseException | None = None


def step_state(
    delivery: DeliveryRecord, state: StepState, event: Event, produced: Any = None
) -> StepStateChanged:
    """The internal event that says a step started, or stopped having ``produced`` (its
    return value). As upstream, a stop names both events as ``str(type(...))``."""
    if state != StepState.NOT_RUNNING:
        return StepStateChanged(
            name=delivery.step,
            step_state=state,
            worker_id=delivery.delivery_id,
            input_event_name=type(event).__name__,
        )
    return StepStateChanged(
        name=delivery.step,
        step_state=state,
        worker_id=delivery.delivery_id,
        input_event_name=str(type(event)),
        output_event_name=str(type(produced)),
    )


# --- a step ended ----------------------------------------------------------------------


def reads_open_deliveries(run: RunRecord, delivery: DeliveryRecord, end: StepEnd) -> bool:
    """Whether :func:`on_step_end` needs the run's open deliveries: to tell if the run is
    left with nothing but waiters (which needs a waiter), or if a stream the delivery is
    in has settled."""
    return bool(run.meta.get("waiters") or end.waiter or delivery.extra.get("scope"))


def on_step_end(
    binding: Binding,
    run: RunRecord,
    open_deliveries: Sequence[DeliveryRecord],
    delivery: DeliveryRecord,
    end: StepEnd,
    *,
    now: datetime,
    step_events: bool = False,
    sent_done: Collection[int] = (),
) -> Decision:
    """A step returned, waited or failed. What it sent since its last await is delivered
    whatever it ended with (``sent_done``: those already journaled). Then its outputs
    become deliveries, the delivery is done, a StopEvent completes the run; a bad return
    or an output that cannot be stored fails the step (retry, ``@catch_error``, run
    failure), as does a raise."""
    try:
        meta = copy_meta(run.meta)
        sent = route_sent(binding, meta, end.journal_id, end.sent, sent_done)
    except UNSTORABLE as exc:
        error = unstorable_output(delivery, exc)
        return on_step_failed(
            binding, run, delivery, error, now=now, open_deliveries=open_deliveries
        )
    if sent.stop is not None:
        # As upstream: a StopEvent the step sent ends the run, whatever the step did next.
        writes = [*sent.writes, SetMeta(meta), FinishDelivery(delivery.fence, "done")]
        writes += completed_writes(binding, run.run_id, sent.stop)
        return Decision(tuple(writes), finished=True, stop=sent.stop)
    after = dataclasses.replace(run, meta=meta) if sent.writes else run
    decision = _ended(binding, after, open_deliveries, delivery, end, now, step_events, sent)
    if not sent.writes:
        return decision
    return dataclasses.replace(
        decision,
        writes=(*sent.writes, SetMeta(meta), AddDeliveries(tuple(sent.added)), *decision.writes),
        publish=(*sent.added, *decision.publish),
    )


def _ended(
    binding: Binding,
    run: RunRecord,
    open_deliveries: Sequence[DeliveryRecord],
    delivery: DeliveryRecord,
    end: StepEnd,
    now: datetime,
    step_events: bool,
    sent: Sent,
) -> Decision:
    if end.error is None:
        try:
            progressed = bool(sent.added)
            return _succeeded(
                binding, run, open_deliveries, delivery, end, now, step_events, progressed
            )
        except WorkflowRuntimeError as exc:
            error: BaseException = exc
        except UNSTORABLE as exc:
            error = unstorable_output(delivery, exc)
    else:
        error = end.error
    return on_step_failed(binding, run, delivery, error, now=now, open_deliveries=open_deliveries)


def _succeeded(
    binding: Binding,
    run: RunRecord,
    open_deliveries: Sequence[DeliveryRecord],
    delivery: DeliveryRecord,
    end: StepEnd,
    now: datetime,
    step_events: bool,
    progressed: bool,
) -> Decision:
    codec = binding.codec
    outputs = [] if end.waiter is not None else returned_outputs(binding, delivery, end.result)
    stop = next((o.event for o in outputs if isinstance(o.event, StopEvent)), None)
    rest = [o for o in outputs if not isinstance(o.event, StopEvent)]
    meta = copy_meta(run.meta)
    release_timed_out_waiter(meta, delivery)
    writes: list[Write] = [
        AppendStream(codec.encode_event(o.event), f"{delivery.delivery_id}:o{i}")
        for i, o in enumerate(rest)
        if isinstance(o.event, InputRequiredEvent)
    ]
    routed: list[NewDelivery] = []
    timeout = []
    if end.waiter is not None:
        writes += _waiter_stream(binding, end)
        answered = _registered(binding, meta, delivery, end.waiter)
        if answered is not None:
            routed.append(answered)
        elif end.waiter.get("timeout") is not None:
            timeout.append(timeout_delivery(delivery, end.waiter, now))
    routed += binding.router.route(meta, rest, delivery.delivery_id).deliveries
    routed += _settled_streams(binding, meta, open_deliveries, delivery, end, routed)
    added = [*routed, *timeout]
    if step_events:
        stopped = step_state(delivery, StepState.NOT_RUNNING, end.event, end.result)
        key = f"{delivery.delivery_id}:a{delivery.attempt}:stopped"
        writes.append(AppendStream(codec.encode_event(stopped), key))
    writes += [AddDeliveries(tuple(added)), SetMeta(meta), FinishDelivery(delivery.fence, "done")]
    if stop is not None:
        writes += completed_writes(binding, delivery.run_id, stop)
        return Decision(tuple(writes), finished=True, stop=stop)
    writes += _settled_status(run, open_deliveries, delivery, meta, bool(routed) or progressed)
    return Decision(tuple(writes), publish=tuple(added))


def _waiter_stream(binding: Binding, end: StepEnd) -> list[Write]:
    """The waiter event of a wait, streamed once per wait (whether or not an answer
    is already there: the wait began, as upstream streams it)."""
    if end.waiter is None or end.waiter_event is None:
        return []
    key = f"{end.waiter['journal_id']}:waiter:{end.waiter['waiter_id']}"
    return [AppendStream(binding.codec.encode_event(end.waiter_event), key)]


def _registered(
    binding: Binding, meta: dict[str, Any], delivery: DeliveryRecord, waiter: dict[str, Any]
) -> NewDelivery | None:
    """Register ``waiter``; if an event that answers it came first (retained), it is
    taken now and the step's resume delivery returned instead of a wait."""
    register_waiter(meta, waiter)
    seed = f"{delivery.delivery_id}/retained"
    return answer_from_retained(meta, waiter, binding.codec, seed)


def _settled_streams(
    binding: Binding,
    meta: dict[str, Any],
    open_deliveries: Sequence[DeliveryRecord],
    delivery: DeliveryRecord,
    end: StepEnd,
    added: Sequence[NewDelivery],
) -> list[NewDelivery]:
    """Open the stream of a returned list; release the collecting steps of the streams
    this delivery was in (and of the one it opened) that have settled."""
    streams = streams_of(delivery.extra.get("scope", []))
    if end.waiter is None and is_fan_out_return(binding, delivery, end.result):
        stream = fan_out_stream(delivery)
        open_stream(meta, stream, delivery, len(end.result))
        streams.insert(0, stream)
    if not streams:
        return []
    others = [d for d in open_deliveries if d.delivery_id != delivery.delivery_id]
    return settle(meta, streams, [*others, *added], binding.collectors)


def _settled_status(
    run: RunRecord,
    open_deliveries: Sequence[DeliveryRecord],
    delivery: DeliveryRecord,
    meta: dict[str, Any],
    progressed: bool,
) -> list[Write]:
    """``waiting`` when only waiters are left; ``running`` again once something moves."""
    if progressed:
        return [SetStatus("running")] if run.status == "waiting" else []
    others = [
        d
        for d in open_deliveries
        if d.delivery_id != delivery.delivery_id and WaitTimeout.of(d) is None
    ]
    if not others and meta.get("waiters") and run.status == "running":
        return [SetStatus("waiting")]
    return []


def returned_outputs(binding: Binding, delivery: DeliveryRecord, result: Any) -> list[Output]:
    """The events a step returned, as outputs (a list return opens a fan-out stream)."""
    spec = binding.specs[delivery.step]
    scope = delivery_scope(delivery)
    if result is None:
        return []
    if isinstance(result, Event):
        if spec.is_fan_out and not isinstance(result, spec.single_returns):
            raise WorkflowRuntimeError(
                f"Step function {spec.name} returned a bare {type(result).__name__} but its "
                "return annotation only declares it inside a list. Return a one-element "
                "list to fan out, or declare the bare type as a union member "
                "(e.g. -> list[A] | B) for ordinary dispatch."
            )
        return [Output(result, None, scope)]
    if is_fan_out_return(binding, delivery, result):
        stream = fan_out_stream(delivery)
        size = len(result)
        return [Output(ev, None, (*scope, (stream, i, size))) for i, ev in enumerate(result)]
    raise WorkflowRuntimeError(
        f"Step function {spec.name} returned {type(result).__name__} instead of an Event "
        f"instance (run {delivery.run_id!r}, step {spec.name!r})."
    )


def is_fan_out_return(binding: Binding, delivery: DeliveryRecord, result: Any) -> bool:
    """Whether ``result`` opens a stream: a list of events from a list-returning step
    (``[]`` included: an empty stream, settled at once)."""
    return (
        binding.specs[delivery.step].is_fan_out
        and isinstance(result, list | tuple)
        and all(isinstance(r, Event) for r in result)
    )


def fan_out_stream(delivery: DeliveryRecord) -> str:
    """The id of the stream a delivery's returned list opens."""
    return child_id(delivery.delivery_id, "fan-out")


__all__ = [
    "StepEnd",
    "on_step_end",
    "reads_open_deliveries",
    "returned_outputs",
    "step_state",
]
