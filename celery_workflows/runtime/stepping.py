"""Running a claimed delivery's step: the body (again after each ``collect_events``
answer), then its end committed by the :class:`~.completion.Completer`.

The step's last ``edit_state`` may commit with its end (see :mod:`.deferral`): when the
body returned with nothing else left to write, its open transaction goes to the completion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import FencedOutError, InvalidMessageError, WorkflowRuntimeError
from ..events import Event, StepState
from ..store.base import DeliveryRecord, RunStore
from . import verbose as trace
from .binding import Binding
from .completion import Completer
from .deferral import HeldTxn, MergeRefused
from .faults import fault_point
from .invoke import call_step
from .routing import Output
from .state import JournalCursor
from .step_context import CollectNeeded, Invocation, StepSuspended
from .transitions import StepEnd, step_state
from .waits import WaitTimeout, on_timeout_claimed
from .writes import transact

log = logging.getLogger("celery_workflows.engine")

__all__ = ["RunnerHost", "StepRunner"]


class RunnerHost(Protocol):
    """What running a step needs of the engine, and no more."""

    store: RunStore
    step_events: bool
    max_collect_rounds: int

    async def append_stream(
        self, binding: Binding, run_id: str, event: Event, key: str | None
    ) -> int: ...


class StepRunner:
    """Runs claimed deliveries for an :class:`~celery_workflows.runtime.engine.Engine`."""

    def __init__(self, engine: RunnerHost, completer: Completer) -> None:
        self.engine = engine
        self._completer = completer

    @property
    def store(self) -> RunStore:
        """The run store (the step's context reads and writes through it)."""
        return self.engine.store

    async def run_claimed(self, binding: Binding, delivery: DeliveryRecord) -> None:
        """Run a claimed delivery's step and commit how it ended."""
        try:
            event = binding.codec.decode_event(delivery.event)
        except InvalidMessageError as exc:
            # A payload this worker cannot read fails the run, naming run and step.
            await self._completer.reject(binding, delivery, str(exc))
            return
        if await self._waiter_timed_out(delivery):
            return
        started = None
        if self.engine.step_events:
            # In the background: the stream append takes the run lock, and the step must
            # not wait for another step's open edit_state() just to say it started.
            running = step_state(delivery, StepState.RUNNING, event)
            started = asyncio.ensure_future(
                self.engine.append_stream(binding, delivery.run_id, running, None)
            )
        verbose = binding.workflow._verbose
        if verbose:
            trace.started(delivery, event)
        # The step's last edit may commit with its end, unless the step-started stream
        # write (which waits for the run lock) is still to come.
        end, held = await self._run(
            binding, delivery, event, merge=lambda: started is None or started.done()
        )
        if verbose:
            trace.finished(delivery, end.result, end.error)
        if started is not None:
            await started
        try:
            try:
                await self._completer.complete(binding, delivery, end, held)
            except MergeRefused:
                # What the step left cannot be stored, and its edit went with it: run it
                # again committing its edits at once (it may run again, as after a crash).
                end, _ = await self._run(binding, delivery, event, merge=None, again=True)
                await self._completer.complete(binding, delivery, end)
        except FencedOutError as exc:
            # The run finished or another attempt took over: this attempt's work is void.
            log.info("completion of %s refused: %s", delivery.delivery_id, exc)
        finally:
            if held is not None and not held.closed:
                await held.abort(RuntimeError("completion abandoned"))

    async def _waiter_timed_out(self, delivery: DeliveryRecord) -> bool:
        """For a wait_for_event timeout delivery: True (and done) if the wait already ended.

        Otherwise the waiter is marked as timing out (no event resumes it any more) and
        stays until this delivery's completion removes it: an attempt killed before that
        leaves the mark, and the next attempt, seeing its own mark, runs the step again.
        """
        if WaitTimeout.of(delivery) is None:
            return False
        decision = await transact(
            self.engine.store,
            delivery.run_id,
            delivery.fence,
            lambda run, _: on_timeout_claimed(run, delivery),
        )
        if decision.answer:
            return True
        # Crash tests kill the worker here: the waiter is marked, the step not yet re-run.
        fault_point("after_wait_timeout_mark")
        return False

    async def _run(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        event: Event,
        *,
        merge: Callable[[], bool] | None,
        again: bool = False,
    ) -> tuple[StepEnd, HeldTxn | None]:
        """Run the step body (again after each ``collect_events`` answer) and return how it
        ended, with its last edit's open transaction if ``merge()`` says the completion may
        commit it (None: the edits commit at once)."""
        from ..context.context import Context

        spec = binding.specs[delivery.step]
        collected: dict[int, list[Event] | None] = {}
        for _ in range(self.engine.max_collect_rounds):
            inv = Invocation(
                self, binding, delivery, spec, event, collected=dict(collected), again=again
            )
            ctx: Context[Any] = Context._for_step(binding.workflow, inv)
            need: CollectNeeded | None = None
            try:
                end = StepEnd(event, result=await call_step(inv, ctx, event))
            except CollectNeeded as needed:
                need, end = needed, StepEnd(event)
            except StepSuspended as suspended:
                end = StepEnd(event, waiter=suspended.waiter, waiter_event=suspended.waiter_event)
            except Exception as exc:
                end = StepEnd(event, error=exc)
            unsent = inv.take_unsent()
            held = _mergeable(inv, end, need) if merge is not None and merge() else None
            try:
                # What the step sent and streamed is committed whatever it ended with.
                await inv.flush()
            except Exception as exc:
                # A send that could not be stored fails the step (unless it failed already).
                end, need = (end if end.error is not None else StepEnd(event, error=exc)), None
            if need is None:
                journal = inv.journal
                end = dataclasses.replace(
                    end, sent=unsent, journal_id=journal.journal_id, journal_fresh=journal.fresh
                )
                return end, held
            if unsent:
                await self.commit_sends(binding, delivery, inv.journal, list(unsent))
            collected[need.index] = await self._collect(binding, delivery, need)
        error = WorkflowRuntimeError("collect_events called too many times")
        return StepEnd(event, error=error), None

    async def commit_sends(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        journal: JournalCursor,
        sends: list[tuple[int, Output]],
    ) -> None:
        """Commit events a step sent (see :meth:`Completer.sent`)."""
        await self._completer.sent(binding, delivery, journal, sends)

    async def append_stream(
        self, binding: Binding, run_id: str, event: Event, key: str | None
    ) -> int:
        """Append ``event`` to the run's stream (the engine's, for the step's context)."""
        return await self.engine.append_stream(binding, run_id, event, key)

    async def _collect(
        self, binding: Binding, delivery: DeliveryRecord, need: CollectNeeded
    ) -> list[Event] | None:
        """The answer to a ``collect_events`` call (see :meth:`Completer.collect`)."""
        return await self._completer.collect(binding, delivery, need)


def _mergeable(inv: Invocation, end: StepEnd, need: CollectNeeded | None) -> HeldTxn | None:
    """The open transaction of the step's last edit, for its completion to commit, when
    the step returned with nothing else left to write before its end (see :mod:`.deferral`)."""
    if need is not None or end.error is not None or end.waiter is not None:
        return None
    if len(inv.pending_writes) != 1:
        return None  # stream writes still to commit: they wait for the run lock
    return inv.deferral.take()
