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
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidMessageError, StateValidationError, WorkflowRuntimeError
from ..events import (
    Event,
    InputRequiredEvent,
    StepFailedEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    WorkflowFailedEvent,
)
from ..store.base import DeliveryRecord, JournalMark, NewDelivery, RunRecord
from .binding import Binding
from .routing import Output, child_id, delivery_scope
from .state import collect_journal_id, invocation_journal, send_journal_id
from .step_context import CollectNeeded, match_collect
from .waits import (
    WaitTimeout,
    register_waiter,
    release_timed_out_waiter,
    timeout_delivery,
)
from .writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    FinishDelivery,
    PutJournal,
    RescheduleDelivery,
    SetMeta,
    SetStatus,
    Write,
    copy_meta,
)

#: Errors of an outcome that cannot be stored (not JSON, too large): the step fails.
UNSTORABLE = (InvalidMessageError, StateValidationError)


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


def step_state(delivery: DeliveryRecord, state: StepState, event: Event) -> StepStateChanged:
    """The internal event that says a step started or stopped on ``event``."""
    return StepStateChanged(
        name=delivery.step,
        step_state=state,
        worker_id=delivery.delivery_id,
        input_event_name=type(event).__name__,
    )


# --- a step ended ----------------------------------------------------------------------


@dataclass
class _Sent:
    """What a batch of sends becomes: its writes, its deliveries, a sent StopEvent."""

    writes: list[Write]
    added: list[NewDelivery]
    stop: StopEvent | None


def _route_sent(
    binding: Binding,
    meta: dict[str, Any],
    journal_id: str,
    sends: Sequence[tuple[int, Output]],
    done: Collection[int],
) -> _Sent:
    """Route the sends not ``done`` (journaled) into ``meta``; each is journaled."""
    sent = _Sent([], [], None)
    for n, out in sends:
        if n in done:
            continue
        sent.writes.append(PutJournal(send_journal_id(journal_id), n))
        if isinstance(out.event, StopEvent):
            sent.stop = sent.stop or out.event
            continue
        if isinstance(out.event, InputRequiredEvent):
            payload = binding.codec.encode_event(out.event)
            sent.writes.append(AppendStream(payload, f"{journal_id}:send{n}"))
        sent.added += binding.router.route(meta, [out], f"{journal_id}/send{n}").deliveries
    return sent


def _completed(binding: Binding, run_id: str, stop: StopEvent) -> list[Write]:
    payload = binding.codec.encode_event(stop)
    return [AppendStream(payload, f"{run_id}:stop"), SetStatus("completed", result=payload)]


def reads_open_deliveries(run: RunRecord, end: StepEnd) -> bool:
    """Whether :func:`on_step_end` needs the run's open deliveries: only to tell if the
    run is left with nothing but waiters, which needs a waiter."""
    return bool(run.meta.get("waiters")) or end.waiter is not None


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
        sent = _route_sent(binding, meta, end.journal_id, end.sent, sent_done)
    except UNSTORABLE as exc:
        error = InvalidMessageError(f"run {delivery.run_id!r} step {delivery.step!r}: {exc}")
        return on_step_failed(binding, run, delivery, error, now=now)
    if sent.stop is not None:
        # As upstream: a StopEvent the step sent ends the run, whatever the step did next.
        writes = [*sent.writes, SetMeta(meta), FinishDelivery(delivery.fence, "done")]
        writes += _completed(binding, run.run_id, sent.stop)
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
    sent: _Sent,
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
            error = InvalidMessageError(f"run {delivery.run_id!r} step {delivery.step!r}: {exc}")
    else:
        error = end.error
    return on_step_failed(binding, run, delivery, error, now=now)


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
    if end.waiter is not None:
        register_waiter(meta, end.waiter)
        if end.waiter_event is not None:
            key = f"{end.waiter['journal_id']}:waiter:{end.waiter['waiter_id']}"
            writes.append(AppendStream(codec.encode_event(end.waiter_event), key))
    routed = binding.router.route(meta, rest, delivery.delivery_id).deliveries
    if end.waiter is None:
        routed += _empty_fan_outs(binding, delivery, end.result)
    added = list(routed)
    if end.waiter is not None and end.waiter.get("timeout") is not None:
        added.append(timeout_delivery(delivery, end.waiter, now))
    if step_events:
        stopped = step_state(delivery, StepState.NOT_RUNNING, end.event)
        key = f"{delivery.delivery_id}:a{delivery.attempt}:stopped"
        writes.append(AppendStream(codec.encode_event(stopped), key))
    writes += [AddDeliveries(tuple(added)), SetMeta(meta), FinishDelivery(delivery.fence, "done")]
    if stop is not None:
        writes += _completed(binding, delivery.run_id, stop)
        return Decision(tuple(writes), finished=True, stop=stop)
    writes += _settled_status(run, open_deliveries, delivery, meta, bool(routed) or progressed)
    return Decision(tuple(writes), publish=tuple(added))


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
        return [Output(result, None, scope)]
    if isinstance(result, list | tuple) and not result and spec.is_fan_out:
        return []  # the empty stream is released by _empty_fan_outs
    fan_out = isinstance(result, list | tuple) and spec.is_fan_out
    if fan_out and all(isinstance(r, Event) for r in result):
        stream = child_id(delivery.delivery_id, "fan-out")
        size = len(result)
        return [Output(ev, None, (*scope, (stream, i, size))) for i, ev in enumerate(result)]
    raise WorkflowRuntimeError(
        f"Step function {spec.name} returned {type(result).__name__} instead of an Event "
        f"instance (run {delivery.run_id!r}, step {spec.name!r})."
    )


def _empty_fan_outs(binding: Binding, delivery: DeliveryRecord, result: Any) -> list[NewDelivery]:
    """A fan-out that returned ``[]`` releases its collectors with an empty batch."""
    spec = binding.specs[delivery.step]
    if not (spec.is_fan_out and isinstance(result, list | tuple) and not result):
        return []
    produced = set(spec.output_events)
    return [
        NewDelivery(
            child_id(delivery.delivery_id, f"empty/{c.name}"),
            c.name,
            delivery.event,
            parent_id=delivery.delivery_id,
            extra={"batch": [], "scope": delivery.extra.get("scope", [])},
        )
        for c in binding.specs.values()
        if c.is_collect and produced & set(c.accepted_events)
    ]


# --- a step failed ---------------------------------------------------------------------


def on_step_failed(
    binding: Binding, run: RunRecord, delivery: DeliveryRecord, exc: BaseException, *, now: datetime
) -> Decision:
    """Retry the step (its policy says when), hand the failure to its ``@catch_error``
    handler (within the handler's budget), or fail the run. A failure that cannot be
    stored (an exception whose fields are not JSON, or too large) fails the run with a
    plain description of it, rather than leave the delivery running to run again."""
    try:
        return _retry_recover_or_fail(binding, run, delivery, exc, now)
    except UNSTORABLE as why:
        return fail_run(binding, delivery, unstorable_failure(delivery, exc, why))


def _retry_recover_or_fail(
    binding: Binding, run: RunRecord, delivery: DeliveryRecord, exc: BaseException, now: datetime
) -> Decision:
    spec = binding.specs[delivery.step]
    retry = dict(delivery.extra.get("retry") or {})
    failures = int(retry.get("count", 0)) + 1
    first = datetime.fromisoformat(retry["first_failed_at"]) if "first_failed_at" in retry else now
    elapsed = (now - first).total_seconds()
    policy = spec.retry_policy
    delay = (
        policy.next(elapsed, failures, exc)
        if policy is not None and isinstance(exc, Exception)
        else None
    )
    if delay is not None:
        retry.update(
            count=failures,
            first_failed_at=first.isoformat(),
            last_failed_at=now.isoformat(),
            last_error=binding.codec.encode_error(exc),
        )
        due = now + timedelta(seconds=delay)
        again = NewDelivery(delivery.delivery_id, delivery.step, delivery.event, not_before=due)
        extra = {**delivery.extra, "retry": retry}
        return Decision((RescheduleDelivery(delivery.fence, due, extra),), publish=(again,))
    recovered = _recovered(binding, run, delivery, exc, failures, elapsed, now)
    if recovered is not None:
        return recovered
    return fail_run(binding, delivery, exc, failures, elapsed)


def _recovered(
    binding: Binding,
    run: RunRecord,
    delivery: DeliveryRecord,
    exc: BaseException,
    failures: int,
    elapsed: float,
    now: datetime,
) -> Decision | None:
    """The failure as a StepFailedEvent for the ``@catch_error`` handler, if one covers
    the step and has recoveries left."""
    handler = binding.error_handler(delivery.step)
    if handler is None:
        return None
    meta = copy_meta(run.meta)
    used = meta.setdefault("recoveries", {}).get(handler.name, 0)
    if used >= handler.catch_error_max_recoveries:
        return None
    meta["recoveries"][handler.name] = used + 1
    release_timed_out_waiter(meta, delivery)
    event = StepFailedEvent(
        step_name=delivery.step,
        input_event=binding.codec.decode_event(delivery.event),
        exception=exc,
        attempts=failures,
        elapsed_seconds=elapsed,
        failed_at=now,
    )
    routed = binding.router.route(meta, [Output(event, handler.name)], delivery.delivery_id)
    error = binding.codec.encode_error(exc)
    writes = (
        AddDeliveries(tuple(routed.deliveries)),
        SetMeta(meta),
        FinishDelivery(delivery.fence, "failed", error),
    )
    return Decision(writes, publish=tuple(routed.deliveries))


def fail_run(
    binding: Binding,
    delivery: DeliveryRecord,
    exc: BaseException,
    failures: int = 1,
    elapsed: float = 0.0,
) -> Decision:
    """The run fails with the step's error: WorkflowFailedEvent streamed, delivery failed."""
    codec = binding.codec
    error = {**codec.encode_error(exc), "kind": "step", "step": delivery.step}
    event = WorkflowFailedEvent(
        step_name=delivery.step, exception=exc, attempts=failures, elapsed_seconds=elapsed
    )
    writes = (
        AppendStream(codec.encode_event(event), f"{delivery.run_id}:failed"),
        FinishDelivery(delivery.fence, "failed", codec.encode_error(exc)),
        SetStatus("failed", error=error),
    )
    return Decision(writes, finished=True)


def poison_reason(delivery: DeliveryRecord, max_crashes: int | None) -> str | None:
    """Why a claimed delivery is poison (its attempts died ``max_crashes`` times without
    a result, retries not counted), or None (DESIGN invariant 6)."""
    failures = int((delivery.extra.get("retry") or {}).get("count", 0))
    crashes = delivery.attempt - 1 - failures
    if max_crashes is None or crashes < max_crashes:
        return None
    return (
        f"delivery {delivery.delivery_id!r} is poison: {crashes} attempts died without "
        "a result (the worker was killed or lost each time)"
    )


def unstorable_failure(
    delivery: DeliveryRecord, exc: BaseException, why: BaseException
) -> InvalidMessageError:
    """What a run fails with when its step's own failure cannot be stored."""
    return InvalidMessageError(
        f"run {delivery.run_id!r} step {delivery.step!r} failed with "
        f"{type(exc).__name__}, which cannot be stored: {why}"
    )


# --- events sent and collect answers ---


def on_events_sent(
    binding: Binding,
    run: RunRecord,
    journal_id: str,
    sends: Sequence[tuple[int, Output]],
    done: Collection[int],
) -> Decision:
    """Events a step sent, committed while it runs (at its next await): those not
    ``done`` (journaled) become deliveries, each journaled; a sent StopEvent completes
    the run, as upstream; a human-in-the-loop request is streamed."""
    meta = copy_meta(run.meta)
    sent = _route_sent(binding, meta, journal_id, sends, done)
    writes = [*sent.writes, AddDeliveries(tuple(sent.added)), SetMeta(meta)]
    if sent.stop is not None:
        writes += _completed(binding, run.run_id, sent.stop)
        return Decision(tuple(writes), finished=True, stop=sent.stop)
    if sent.added and run.status == "waiting":
        writes.append(SetStatus("running"))
    return Decision(tuple(writes), publish=tuple(sent.added))


# --- collect answers ------------------------------------------------------------------


def on_collect(
    binding: Binding,
    run: RunRecord,
    delivery: DeliveryRecord,
    need: CollectNeeded,
    mark: JournalMark | None,
) -> Decision:
    """Answer the ``need.index``-th ``collect_events`` of an invocation: the events that
    fill it (taken out of the buffer) or None, journaled so a re-run gets the same."""
    codec = binding.codec
    if mark is not None:
        answer = None if mark.result is None else [codec.decode_event(p) for p in mark.result]
        return Decision(answer=answer)
    meta = copy_meta(run.meta)
    buffers = meta.setdefault("collect", {})
    key = f"{delivery.step}|{need.buffer_id}"
    payloads = [*buffers.get(key, []), codec.encode_event(need.event)]
    events = [codec.decode_event(p) for p in payloads]
    used = match_collect(events, need.expected)
    result = [events[i] for i in used] if used is not None else None
    if used is not None:
        payloads = [p for i, p in enumerate(payloads) if i not in used]
    buffers[key] = payloads
    encoded = [codec.encode_event(e) for e in result] if result is not None else None
    journal = PutJournal(collect_journal_id(invocation_journal(delivery)), need.index, encoded)
    return Decision((SetMeta(meta), journal), answer=result)


__all__ = [
    "UNSTORABLE",
    "StepEnd",
    "fail_run",
    "on_collect",
    "on_events_sent",
    "on_step_end",
    "on_step_failed",
    "poison_reason",
    "reads_open_deliveries",
    "returned_outputs",
    "step_state",
    "unstorable_failure",
]
