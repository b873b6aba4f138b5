"""A step's failure, as a pure decision: retry it, hand it to ``@catch_error``, or fail
the run; and the poison rule. See :mod:`.transitions` for the shape."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ..errors import InvalidMessageError, StateValidationError
from ..events import (
    StepFailedEvent,
    WorkflowFailedEvent,
)
from ..store.base import DeliveryRecord, NewDelivery, RunRecord
from .binding import Binding
from .routing import Output
from .streams import settle, streams_of
from .waits import (
    release_timed_out_waiter,
)
from .writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    FinishDelivery,
    RescheduleDelivery,
    SetMeta,
    SetStatus,
    copy_meta,
)

#: Errors of an outcome that cannot be stored (not JSON, too large): the step fails.
UNSTORABLE = (InvalidMessageError, StateValidationError)


def on_step_failed(
    binding: Binding,
    run: RunRecord,
    delivery: DeliveryRecord,
    exc: BaseException,
    *,
    now: datetime,
    open_deliveries: Sequence[DeliveryRecord] = (),
) -> Decision:
    """Retry the step (its policy says when), hand the failure to its ``@catch_error``
    handler (within the handler's budget), or fail the run. A failure that cannot be
    stored (an exception whose fields are not JSON, or too large) fails the run with a
    plain description of it, rather than leave the delivery running to run again."""
    try:
        return _retry_recover_or_fail(binding, run, delivery, exc, now, open_deliveries)
    except UNSTORABLE as why:
        return fail_run(binding, delivery, unstorable_failure(delivery, exc, why))


def _retry_recover_or_fail(
    binding: Binding,
    run: RunRecord,
    delivery: DeliveryRecord,
    exc: BaseException,
    now: datetime,
    open_deliveries: Sequence[DeliveryRecord],
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
            # When the first attempt started (its claim): ctx.retry_info() counts from it.
            first_started_at=retry.get("first_started_at", delivery.updated_at.isoformat()),
            first_failed_at=first.isoformat(),
            last_failed_at=now.isoformat(),
            last_error=binding.codec.encode_error(exc),
        )
        due = now + timedelta(seconds=delay)
        again = NewDelivery(delivery.delivery_id, delivery.step, delivery.event, not_before=due)
        extra = {**delivery.extra, "retry": retry}
        return Decision((RescheduleDelivery(delivery.fence, due, extra),), publish=(again,))
    recovered = _recovered(binding, run, delivery, exc, (failures, elapsed, now), open_deliveries)
    if recovered is not None:
        return recovered
    return fail_run(binding, delivery, exc, failures, elapsed)


def _recovered(
    binding: Binding,
    run: RunRecord,
    delivery: DeliveryRecord,
    exc: BaseException,
    when: tuple[int, float, datetime],
    open_deliveries: Sequence[DeliveryRecord],
) -> Decision | None:
    """The failure as a StepFailedEvent for the ``@catch_error`` handler, if one covers
    the step and has recoveries left. (The failed delivery leaves its fan-out branch:
    a stream it was the last work of settles.)"""
    failures, elapsed, now = when
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
    added = routed.deliveries
    others = [d for d in open_deliveries if d.delivery_id != delivery.delivery_id]
    streams = streams_of(delivery.extra.get("scope", []))
    added += settle(meta, streams, [*others, *added], binding.collectors)
    error = binding.codec.encode_error(exc)
    writes = (
        AddDeliveries(tuple(added)),
        SetMeta(meta),
        FinishDelivery(delivery.fence, "failed", error),
    )
    return Decision(writes, publish=tuple(added))


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


def unstorable_output(delivery: DeliveryRecord, why: BaseException) -> InvalidMessageError:
    """The error a step fails with when what it left (an output, a send, its state)
    cannot be stored: nothing of it was written."""
    return InvalidMessageError(f"run {delivery.run_id!r} step {delivery.step!r}: {why}")


def unstorable_failure(
    delivery: DeliveryRecord, exc: BaseException, why: BaseException
) -> InvalidMessageError:
    """What a run fails with when its step's own failure cannot be stored."""
    return InvalidMessageError(
        f"run {delivery.run_id!r} step {delivery.step!r} failed with "
        f"{type(exc).__name__}, which cannot be stored: {why}"
    )


__all__ = [
    "UNSTORABLE",
    "fail_run",
    "on_step_failed",
    "poison_reason",
    "unstorable_failure",
    "unstorable_output",
]
