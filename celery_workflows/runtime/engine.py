"""The run lifecycle, in one place, for every runtime.

start: run row + start delivery in one transaction, then publish.
execute(delivery): claim (new attempt, lease) -> run the step with a Context bound to the
    row -> complete in one transaction (outputs become deliveries, the delivery is done, a
    StopEvent completes the run) -> publish the new deliveries after commit.
The in-process runtime and the Celery runtime differ only in their dispatcher and in how
callers wait; both drive this module.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidMessageError,
    StateValidationError,
    WorkflowRuntimeError,
)
from ..events import Event, StartEvent
from ..store.base import DeliveryRecord, NewDelivery, NewRun, RunRecord, RunStore, utcnow
from . import verbose as trace
from .binding import Binding, bind
from .codec import start_fingerprint
from .completion import Completer
from .dispatch import Dispatch, Dispatcher, Listener
from .failures import poison_reason
from .instrumentation import TAGS_META_KEY, tagged
from .interventions import Ending, TimedOut, halt, on_event_sent_in, refuse_unknown_workflow
from .routing import Output
from .stepping import StepRunner
from .writes import transact

if TYPE_CHECKING:
    from ..workflow import Workflow

log = logging.getLogger("celery_workflows.engine")


class Engine:
    """Drives runs over a :class:`RunStore` and a :class:`Dispatcher`."""

    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        *,
        lease_seconds: float = 3600.0,
        max_collect_rounds: int = 64,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.lease_seconds = lease_seconds
        self.max_collect_rounds = max_collect_rounds
        #: Stream StepStateChanged events (upstream's internal events). The in-process
        #: runtime turns this on; for Celery it would cost two stream writes per hop.
        self.step_events = False
        #: Keeps a running attempt's lease alive while it runs (None: nothing; in-process
        #: leases are long). A worker that dies stops beating: its delivery is claimable.
        self.heartbeat: Callable[[DeliveryRecord], AbstractContextManager[None]] | None = None
        #: Attempts that died without a result before a delivery is declared poison.
        self.max_crashes: int | None = None
        #: Largest event, as JSON, a step may emit (None: no limit); JSON stores only.
        self.max_event_bytes: int | None = None
        #: How long a delivery over its step's ``num_workers`` waits before trying again.
        self.busy_retry_seconds = 0.2
        #: StopEvents of runs completed in this process, as the step returned them (a
        #: JSON store would turn a tuple result into a list): the in-process runtime's
        #: callers get the very object, like upstream's. Bounded; None turns it off.
        self.live_results: OrderedDict[str, Event] | None = None
        self.bindings: dict[str, Binding] = {}
        #: In-process runs: the binding of the workflow instance that started each one,
        #: until it ends (two instances of one class run concurrently, each its own
        #: steps, as upstream). None: runs take their workflow's registered binding.
        self.run_bindings: dict[str, Binding] | None = None
        self.listeners: list[Listener] = []
        self._completer = Completer(self)
        self._runner = StepRunner(self, self._completer)

    # --- registration ------------------------------------------------------------------

    def register(self, workflow: Workflow) -> Binding:
        """Bind ``workflow`` (its name routes deliveries to it)."""
        binding = bind(workflow, payloads=self.store.payloads, max_event_bytes=self.max_event_bytes)
        self.bindings[binding.name] = binding
        return binding

    def binding_for(self, workflow_name: str) -> Binding:
        """The binding of a registered workflow name (WorkflowRuntimeError if unknown)."""
        try:
            return self.bindings[workflow_name]
        except KeyError:
            raise WorkflowRuntimeError(
                f"workflow {workflow_name!r} is not registered with this runtime"
            ) from None

    def remember_result(self, run_id: str, stop: Event) -> None:
        """Keep the live StopEvent of a run completed here (see ``live_results``)."""
        if self.live_results is None:
            return
        self.live_results[run_id] = stop
        while len(self.live_results) > 1000:
            self.live_results.popitem(last=False)

    def _binding_of(self, run_id: str, workflow_name: str) -> Binding | None:
        started_here = self.run_bindings.get(run_id) if self.run_bindings is not None else None
        if started_here is not None and started_here.name == workflow_name:
            return started_here
        return self.bindings.get(workflow_name)

    def notify(self, run_id: str, *, finished: bool = False) -> None:
        """Tell listeners that ``run_id`` changed (``finished``: it just ended)."""
        if finished and self.run_bindings is not None:
            self.run_bindings.pop(run_id, None)
        for listener in self.listeners:
            listener.changed(run_id, finished=finished)

    # --- start -------------------------------------------------------------------------

    async def start(
        self,
        binding: Binding,
        start_event: StartEvent | None,
        *,
        run_id: str,
        state: Any,
        timeout: float | None,
        resume: Sequence[NewDelivery] = (),
        meta: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        publish: bool = True,
    ) -> tuple[RunRecord, bool, list[NewDelivery]]:
        """Create the run with its first deliveries; publish them after commit.

        Returns the run, whether this call created it, and its first deliveries (for a
        caller that publishes them itself, from its own thread and loop).
        """
        # The first deliveries say whether the run keeps caller tags (as later ones do).
        mark = tagged(meta or {})
        deliveries = [dataclasses.replace(d, extra={**d.extra, **mark}) for d in resume]
        try:
            if start_event is not None:
                routed = binding.router.route(
                    {TAGS_META_KEY: True} if mark else {}, [Output(start_event)], f"{run_id}:start"
                )
                deliveries.extend(routed.deliveries)
            state_payload = binding.codec.encode_state(state)
        except (InvalidMessageError, StateValidationError) as exc:
            # The caller of run() gets it, naming the run and the steps it was for.
            raise type(exc)(f"{_start_where(binding, run_id, start_event)} {exc}") from exc
        deadline = utcnow() + timedelta(seconds=timeout) if timeout else None
        new = NewRun(
            run_id=run_id,
            workflow_name=binding.name,
            code_version=binding.code_version,
            state=state_payload,
            meta=dict(meta or {}),
            idempotency_key=idempotency_key,
            deadline_at=deadline,
            start_fingerprint=start_fingerprint(deliveries),
        )
        record, created = await self.store.create_run(new, deliveries)
        if created and self.run_bindings is not None:
            self.run_bindings[run_id] = binding  # before its first delivery is published
        if created and start_event is not None and binding.workflow._verbose:
            trace.added(start_event)
        if created and publish:
            self.publish(binding, run_id, deliveries)
        return record, created, deliveries

    def publish(
        self, binding: Binding, run_id: str, deliveries: Sequence[NewDelivery | DeliveryRecord]
    ) -> None:
        """Hand committed deliveries to the dispatcher."""
        if deliveries:
            self.dispatcher.dispatch(
                [
                    Dispatch(d.delivery_id, run_id, binding.name, d.step, d.not_before)
                    for d in deliveries
                ]
            )

    # --- execute one delivery ------------------------------------------------------------

    async def execute(
        self,
        delivery_id: str,
        *,
        max_running: int | None = None,
        workflow_name: str | None = None,
    ) -> None:
        """Claim and run one delivery; a redelivered or stale message is dropped.

        ``max_running`` is the step's ``num_workers``: with that many attempts of the step
        already running in the run (anywhere in the cluster), the delivery is published
        again a little later instead.
        """
        claim = await self.store.claim(
            delivery_id,
            lease_seconds=self.lease_seconds,
            max_running=max_running,
            workflow_name=workflow_name,
        )
        if claim.outcome == "wrong_workflow":
            # A message whose task names another workflow than the run's (a forged or
            # misrouted one): that workflow's code must not run on this run.
            log.error(
                "refused a message for delivery %r: its task names workflow %r, not the "
                "run's; the delivery is left as it was",
                delivery_id,
                workflow_name,
            )
            return
        if claim.outcome == "busy" and claim.delivery is not None:
            await self._later(claim.delivery, workflow_name)
            return
        if claim.outcome == "missing":
            log.warning("dropped a message for delivery %r: no such delivery", delivery_id)
            return
        if claim.outcome != "claimed" or claim.delivery is None:
            log.debug("delivery %s not run: %s", delivery_id, claim.outcome)
            return
        delivery = claim.delivery
        if workflow_name is None:
            # The dispatcher usually says (it is in the task name); else ask the run row.
            workflow_name = (await self.store.get_run(delivery.run_id)).workflow_name
        binding = self._binding_of(delivery.run_id, workflow_name)
        if binding is None:
            await self._unknown_workflow(delivery, workflow_name)
            return
        spec = binding.specs.get(delivery.step)
        if spec is None:
            await self._completer.reject(binding, delivery, f"unknown step {delivery.step!r}")
            return
        if await self._poisoned(binding, delivery):
            return
        with self.heartbeat(delivery) if self.heartbeat is not None else nullcontext():
            await self._runner.run_claimed(binding, delivery)

    async def _unknown_workflow(self, delivery: DeliveryRecord, name: str) -> None:
        """Fail a run whose workflow this process does not know (no codec to use)."""
        decision = refuse_unknown_workflow(delivery, name)
        log.error("%s; the run fails", decision.answer)
        await transact(self.store, delivery.run_id, delivery.fence, lambda *_: decision)
        self.notify(delivery.run_id, finished=True)

    async def _later(self, delivery: DeliveryRecord, workflow_name: str | None) -> None:
        """Publish a busy delivery again a little later (its step is at ``num_workers``)."""
        if workflow_name is None:
            workflow_name = (await self.store.get_run(delivery.run_id)).workflow_name
        due = utcnow() + timedelta(seconds=self.busy_retry_seconds)
        # Stamped, so the sweeper counts the age of this message, not of the first one
        # (a delayed message is not in the queue: the sweeper would copy it every sweep).
        await self.store.mark_published(delivery.delivery_id, due)
        self.dispatcher.dispatch(
            [Dispatch(delivery.delivery_id, delivery.run_id, workflow_name, delivery.step, due)]
        )

    async def _poisoned(self, binding: Binding, delivery: DeliveryRecord) -> bool:
        """Fail the run of a delivery whose attempts keep dying (DESIGN invariant 6)."""
        reason = poison_reason(delivery, self.max_crashes)
        if reason is not None:
            await self._completer.reject(binding, delivery, reason)
        return reason is not None

    # --- events from outside, stream, cancel, timeout ------------------------------------

    async def send_event(
        self, binding: Binding, run_id: str, event: Event, step: str | None
    ) -> None:
        """Send ``event`` into a run from outside (a human's answer, a nudge)."""
        if step is not None:
            binding.check_target(step, event)
        if binding.workflow._verbose:
            trace.added(event)
        parent = f"{run_id}:ext-{uuid.uuid4().hex}"
        decision = await transact(
            self.store,
            run_id,
            None,
            lambda run, open_: on_event_sent_in(binding, run, open_, event, step, parent),
            reads_open=lambda run: not run.finished,
        )
        self.publish(binding, run_id, decision.publish)
        self.notify(run_id)

    async def append_stream(
        self, binding: Binding, run_id: str, event: Event, key: str | None
    ) -> int:
        """Append ``event`` to the run's stream."""
        async with self.store.locked(run_id) as txn:
            seq = await txn.append_stream(binding.codec.encode_event(event), key)
        self.notify(run_id)
        return seq

    async def cancel(self, binding: Binding, run_id: str) -> bool:
        """Cancel a run: stream WorkflowCancelledEvent, status cancelled."""
        return await self._halt(binding, run_id, "cancelled")

    async def expire(self, binding: Binding, run_id: str, timeout: float) -> bool:
        """Fail a run that outlived its timeout, like upstream (WorkflowTimeoutError)."""
        return await self._halt(binding, run_id, TimedOut(timeout))

    async def _halt(self, binding: Binding, run_id: str, ending: Ending) -> bool:
        """End a still-going run (see :func:`halt`) and wake its waiters."""
        ended = await halt(self.store, binding.codec, run_id, ending)
        if ended:
            self.notify(run_id, finished=True)
        return ended


def _start_where(binding: Binding, run_id: str, start_event: StartEvent | None) -> str:
    """Where a start went wrong: the run, and the steps its start event was for."""
    if start_event is None:
        return f"run {run_id!r} start"
    steps = ", ".join(repr(s.name) for s in binding.router.targets(start_event, None))
    return f"run {run_id!r} step {steps or '(none)'}, start"


__all__ = ["Dispatch", "Dispatcher", "Engine", "Listener"]
