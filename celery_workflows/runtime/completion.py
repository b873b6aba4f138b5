"""The completion transaction of a delivery (DESIGN invariant 3).

Whatever a step did (returned events, suspended in ``wait_for_event``, failed) is
committed in one transaction under the run lock, fenced by the delivery's attempt: the
outputs become deliveries, the delivery is closed, a StopEvent completes the run. The new
deliveries are published only after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .._signature import StepSpec
from ..errors import InvalidMessageError, StateValidationError, WorkflowRuntimeError
from ..events import (
    Event,
    InputRequiredEvent,
    StepFailedEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    WorkflowFailedEvent,
    truncated_message,
)
from ..store.base import DeliveryRecord, NewDelivery, RunStore, RunTxn, utcnow
from .binding import Binding
from .faults import fault_point
from .routing import Output, child_id
from .step_context import Invocation, StepSuspended


def step_state(delivery: DeliveryRecord, state: StepState, event: Event) -> StepStateChanged:
    """The internal event that says a step started or stopped on ``event``."""
    return StepStateChanged(
        name=delivery.step,
        step_state=state,
        worker_id=delivery.delivery_id,
        input_event_name=type(event).__name__,
    )


log = logging.getLogger("celery_workflows.engine")


@dataclass
class Outcome:
    """What one invocation of a step ended with."""

    invocation: Invocation
    result: Any = None
    suspended: StepSuspended | None = None
    error: BaseException | None = None


def copy_meta(value: Any) -> Any:
    """Copy meta's dicts and lists (so a rolled-back transaction leaves it untouched),
    sharing the payloads inside them."""
    if isinstance(value, dict):
        return {k: copy_meta(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_meta(v) for v in value]
    return value


def returned_outputs(inv: Invocation, result: Any) -> list[Output]:
    """The events a step returned, as outputs (a list return opens a fan-out stream)."""
    if result is None:
        return []
    if isinstance(result, Event):
        return [Output(result, None, inv.scope)]
    if isinstance(result, list | tuple) and not result and inv.spec.is_fan_out:
        return []  # the empty stream is released by Completer._empty_fan_outs
    if isinstance(result, list | tuple) and inv.spec.is_fan_out:
        bad = [r for r in result if not isinstance(r, Event)]
        if not bad:
            stream = child_id(inv.delivery.delivery_id, "fan-out")
            size = len(result)
            return [
                Output(ev, None, (*inv.scope, (stream, i, size))) for i, ev in enumerate(result)
            ]
    raise WorkflowRuntimeError(
        f"Step function {inv.spec.name} returned {type(result).__name__} instead of an Event "
        f"instance (run {inv.delivery.run_id!r}, step {inv.spec.name!r})."
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


def release_timed_out_waiter(meta: dict[str, Any], delivery: DeliveryRecord) -> None:
    """Remove the waiter that ``delivery`` (its timeout) marked, in its completion."""
    if "timeout_of" in delivery.extra and meta.get("waiters"):
        meta["waiters"] = [
            w for w in meta["waiters"] if w.get("timing_out") != delivery.delivery_id
        ]


def _timeout_delivery(delivery: DeliveryRecord, waiter: dict[str, Any]) -> NewDelivery:
    """Re-runs the waiting step when the wait times out (dropped if the wait ended)."""
    due = utcnow() + timedelta(seconds=float(waiter["timeout"]))
    marker = {"waiter_id": waiter["waiter_id"], "journal_id": waiter["journal_id"]}
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
            "timeout_of": marker,
        },
    )


class CompletionHost(Protocol):
    """What the completion needs of the engine, and no more."""

    store: RunStore
    step_events: bool

    def publish(
        self, binding: Binding, run_id: str, deliveries: Sequence[NewDelivery | DeliveryRecord]
    ) -> None: ...

    def notify(self, run_id: str, *, finished: bool = False) -> None: ...

    def remember_result(self, run_id: str, stop: Event) -> None: ...


class Completer:
    """Commits outcomes for an :class:`~celery_workflows.runtime.engine.Engine`."""

    def __init__(self, engine: CompletionHost) -> None:
        self.engine = engine

    async def complete(
        self, binding: Binding, delivery: DeliveryRecord, spec: StepSpec, outcome: Outcome
    ) -> None:
        """Commit ``outcome`` of ``delivery``."""
        if outcome.error is None:
            try:
                await self._commit_success(binding, delivery, outcome)
                return
            except WorkflowRuntimeError as exc:
                outcome.error = exc
            except (InvalidMessageError, StateValidationError) as exc:
                # An output that cannot be stored (too large, not JSON), whether returned,
                # sent or the event a wait asks for: the step fails with that reason;
                # nothing of the transaction was written.
                outcome.error = InvalidMessageError(
                    f"run {delivery.run_id!r} step {delivery.step!r}: {exc}"
                )
        await self._failed(binding, delivery, spec, outcome.error)

    async def _commit_success(
        self, binding: Binding, delivery: DeliveryRecord, outcome: Outcome
    ) -> None:
        """Commit a suspension or the returned events (WorkflowRuntimeError: bad return)."""
        inv = outcome.invocation
        if outcome.suspended is not None:
            await self._commit(binding, inv, inv.sent, outcome.suspended)
            return
        outputs = [*inv.sent, *returned_outputs(inv, outcome.result)]
        await self._commit(binding, inv, outputs, None, outcome.result)

    async def _commit(
        self,
        binding: Binding,
        inv: Invocation,
        outputs: list[Output],
        suspended: StepSuspended | None,
        outcome_result: Any = None,
    ) -> None:
        delivery = inv.delivery
        codec = binding.codec
        stop = next((o.event for o in outputs if isinstance(o.event, StopEvent)), None)
        rest = [o for o in outputs if not isinstance(o.event, StopEvent)]
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            meta = copy_meta(txn.run.meta)
            release_timed_out_waiter(meta, delivery)
            for i, out in enumerate(rest):
                if isinstance(out.event, InputRequiredEvent):
                    await txn.append_stream(
                        codec.encode_event(out.event), f"{delivery.delivery_id}:o{i}"
                    )
            if suspended is not None:
                await self._register_waiter(binding, txn, meta, suspended)
            routed = binding.router.route(meta, rest, delivery.delivery_id)
            routed.deliveries.extend(_empty_fan_outs(binding, delivery, outcome_result))
            progress = list(routed.deliveries)
            if suspended is not None and suspended.waiter.get("timeout") is not None:
                routed.deliveries.append(_timeout_delivery(delivery, suspended.waiter))
            if self.engine.step_events:
                await txn.append_stream(
                    codec.encode_event(step_state(delivery, StepState.NOT_RUNNING, inv.event)),
                    f"{delivery.delivery_id}:a{delivery.attempt}:stopped",
                )
            txn.add_deliveries(routed.deliveries)
            txn.set_meta(meta)
            txn.finish_delivery(delivery.fence, "done")
            if stop is not None:
                payload = codec.encode_event(stop)
                await txn.append_stream(payload, f"{delivery.run_id}:stop")
                txn.set_status("completed", result=payload)
            else:
                await self._settle_status(txn, delivery, meta, progress)
        # Crash tests kill the worker here: committed, not yet published (outbox gap).
        fault_point("after_completion_commit")
        if stop is not None:
            self.engine.remember_result(delivery.run_id, stop)
        if stop is None:
            self.engine.publish(binding, delivery.run_id, routed.deliveries)
        self.engine.notify(delivery.run_id, finished=stop is not None)

    async def _register_waiter(
        self, binding: Binding, txn: RunTxn, meta: dict[str, Any], suspended: StepSuspended
    ) -> None:
        waiter = suspended.waiter
        waiters = meta.setdefault("waiters", [])
        waiters[:] = [
            w
            for w in waiters
            if w["waiter_id"] != waiter["waiter_id"] or w["journal_id"] != waiter["journal_id"]
        ]
        waiters.append(waiter)
        if suspended.waiter_event is not None:
            key = f"{waiter['journal_id']}:waiter:{waiter['waiter_id']}"
            await txn.append_stream(binding.codec.encode_event(suspended.waiter_event), key)

    @staticmethod
    async def _settle_status(
        txn: RunTxn, delivery: DeliveryRecord, meta: dict[str, Any], added: list[NewDelivery]
    ) -> None:
        if added:
            if txn.run.status == "waiting":
                txn.set_status("running")
            return
        others = [
            d
            for d in await txn.open_deliveries()
            if d.delivery_id != delivery.delivery_id and "timeout_of" not in d.extra
        ]
        if not others and meta.get("waiters") and txn.run.status == "running":
            txn.set_status("waiting")

    async def _failed(
        self, binding: Binding, delivery: DeliveryRecord, spec: StepSpec, exc: BaseException
    ) -> None:
        try:
            await self._settle_failure(binding, delivery, spec, exc)
        except (InvalidMessageError, StateValidationError) as unstorable:
            # The failure itself cannot be stored (an exception whose fields are not
            # JSON, or too large): the run fails with a plain description of it instead
            # of the delivery staying running and its body running again and again.
            plain = InvalidMessageError(
                f"run {delivery.run_id!r} step {delivery.step!r} failed with "
                f"{type(exc).__name__}, which cannot be stored: {unstorable}"
            )
            await self._fail_run(binding, delivery, plain, 1, 0.0)

    async def _settle_failure(
        self, binding: Binding, delivery: DeliveryRecord, spec: StepSpec, exc: BaseException
    ) -> None:
        """Retry the step, hand the failure to @catch_error, or fail the run."""
        now = utcnow()
        retry = dict(delivery.extra.get("retry") or {})
        failures = int(retry.get("count", 0)) + 1
        first = (
            datetime.fromisoformat(retry["first_failed_at"]) if "first_failed_at" in retry else now
        )
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
            await self._retry(binding, delivery, now + timedelta(seconds=delay), retry)
            return
        handler = binding.error_handler(spec.name)
        if handler is not None and await self._recover(
            binding, delivery, handler, exc, failures, elapsed, now
        ):
            return
        await self._fail_run(binding, delivery, exc, failures, elapsed)

    async def _retry(
        self, binding: Binding, delivery: DeliveryRecord, due: datetime, retry: dict[str, Any]
    ) -> None:
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            txn.reschedule_delivery(delivery.fence, due, {**delivery.extra, "retry": retry})
        retried = NewDelivery(delivery.delivery_id, delivery.step, delivery.event, not_before=due)
        self.engine.publish(binding, delivery.run_id, [retried])

    async def _recover(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        handler: StepSpec,
        exc: BaseException,
        failures: int,
        elapsed: float,
        now: datetime,
    ) -> bool:
        event = StepFailedEvent(
            step_name=delivery.step,
            input_event=binding.codec.decode_event(delivery.event),
            exception=exc,
            attempts=failures,
            elapsed_seconds=elapsed,
            failed_at=now,
        )
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            meta = copy_meta(txn.run.meta)
            release_timed_out_waiter(meta, delivery)
            used = meta.setdefault("recoveries", {}).get(handler.name, 0)
            if used >= handler.catch_error_max_recoveries:
                return False
            meta["recoveries"][handler.name] = used + 1
            routed = binding.router.route(meta, [Output(event, handler.name)], delivery.delivery_id)
            txn.add_deliveries(routed.deliveries)
            txn.set_meta(meta)
            txn.finish_delivery(delivery.fence, "failed", binding.codec.encode_error(exc))
        self.engine.publish(binding, delivery.run_id, routed.deliveries)
        return True

    async def _fail_run(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        exc: BaseException,
        failures: int,
        elapsed: float,
    ) -> None:
        codec = binding.codec
        log.warning(
            "run %s step %s failed: %s: %s",
            delivery.run_id,
            delivery.step,
            type(exc).__name__,
            truncated_message(str(exc)),
        )
        error = {**codec.encode_error(exc), "kind": "step", "step": delivery.step}
        event = WorkflowFailedEvent(
            step_name=delivery.step, exception=exc, attempts=failures, elapsed_seconds=elapsed
        )
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            await txn.append_stream(codec.encode_event(event), f"{delivery.run_id}:failed")
            txn.finish_delivery(delivery.fence, "failed", codec.encode_error(exc))
            txn.set_status("failed", error=error)
        self.engine.notify(delivery.run_id, finished=True)

    async def reject(self, binding: Binding, delivery: DeliveryRecord, reason: str) -> None:
        """Fail the run of a delivery that cannot be processed, naming run and step."""
        exc = InvalidMessageError(f"run {delivery.run_id!r} step {delivery.step!r}: {reason}")
        await self._fail_run(binding, delivery, exc, 1, 0.0)
