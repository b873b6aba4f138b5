"""The shell around a step's end (DESIGN invariant 3).

Whatever a step did (returned events, suspended in ``wait_for_event``, failed) is decided
by a pure transition (:mod:`.transitions`) and committed in one transaction under the run
lock, fenced by the delivery's attempt: the outputs become deliveries, the delivery is
closed, a StopEvent completes the run. The new deliveries are published only after the
commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from ..errors import InvalidMessageError
from ..events import Event
from ..store.base import DeliveryRecord, NewDelivery, RunStore, RunTxn, utcnow
from .binding import Binding
from .deferral import HeldTxn, MergeRefused
from .failures import (
    UNSTORABLE,
    fail_run,
    on_step_failed,
    unstorable_failure,
    unstorable_output,
)
from .faults import fault_point
from .routing import Output
from .sends import on_collect, on_events_sent
from .state import JournalCursor, collect_journal_id, invocation_journal, send_journal_id
from .step_context import CollectNeeded
from .step_events import append_running, wants_step_events
from .transitions import StepEnd, on_step_end, reads_open_deliveries
from .writes import Decision, SetStatus, apply, transact

log = logging.getLogger("celery_workflows.engine")


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
    """Commits how steps ended, for an :class:`~celery_workflows.runtime.engine.Engine`."""

    def __init__(self, engine: CompletionHost) -> None:
        self.engine = engine

    async def complete(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        end: StepEnd,
        held: HeldTxn | None = None,
    ) -> None:
        """Commit ``end`` of ``delivery`` (FencedOutError: another attempt owns it), in
        ``held`` if given: the open transaction of the step's last edit, committed with
        the end (MergeRefused: the end could not be stored and both were rolled back)."""
        try:
            if held is None:
                async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
                    decision = await self._decide(binding, delivery, end, txn)
                    await apply(txn, decision.writes)
            else:
                decision = await self._commit_with_edit(binding, delivery, end, held)
        except UNSTORABLE as exc:
            # The store refused what the step left (e.g. state over its size limit):
            # the step fails with that reason; nothing of the transaction was written.
            why = unstorable_output(delivery, exc)
            await self.failed(binding, delivery, why)
            return
        # Crash tests kill the worker here: committed, not yet published (outbox gap).
        fault_point("after_completion_commit")
        self._after(binding, delivery, decision)

    async def _commit_with_edit(
        self, binding: Binding, delivery: DeliveryRecord, end: StepEnd, held: HeldTxn
    ) -> Decision:
        try:
            decision = await self._decide(binding, delivery, end, held.txn)
        except UNSTORABLE:
            # Refused before anything of the end was written: the edit commits alone, and
            # the step fails as it would have with its edit committed earlier.
            await held.commit()
            raise
        except BaseException as exc:
            await held.abort(exc)
            raise
        try:
            await apply(held.txn, decision.writes)
        except UNSTORABLE as exc:
            await held.abort(exc)
            raise MergeRefused(str(exc)) from exc
        except BaseException as exc:
            await held.abort(exc)
            raise
        await held.commit()
        return decision

    async def _decide(
        self, binding: Binding, delivery: DeliveryRecord, end: StepEnd, txn: RunTxn
    ) -> Decision:
        """How ``end`` changes the run, read and decided in ``txn`` (no write yet)."""
        now = utcnow()
        run = txn.run
        open_deliveries = (
            await txn.open_deliveries() if reads_open_deliveries(run, delivery, end) else []
        )
        done: set[int] = set()
        if end.sent and not end.journal_fresh:
            marks = send_journal_id(end.journal_id)
            done = {n for n, _ in end.sent if await txn.journal_get(marks, n) is not None}
        step_events = self.engine.step_events or wants_step_events(run)
        if step_events and not self.engine.step_events:
            await append_running(txn, binding, delivery, end.event)
        return on_step_end(
            binding,
            run,
            open_deliveries,
            delivery,
            end,
            now=now,
            step_events=step_events,
            sent_done=done,
        )

    async def failed(self, binding: Binding, delivery: DeliveryRecord, exc: BaseException) -> None:
        """Retry the step, hand the failure to ``@catch_error``, or fail the run."""
        now = utcnow()
        store = self.engine.store
        try:
            decision = await transact(
                store,
                delivery.run_id,
                delivery.fence,
                lambda run, open_: on_step_failed(
                    binding, run, delivery, exc, now=now, open_deliveries=open_
                ),
                reads_open=bool(delivery.extra.get("scope")),
            )
        except UNSTORABLE as why:
            plain = unstorable_failure(delivery, exc, why)
            decision = await transact(
                store,
                delivery.run_id,
                delivery.fence,
                lambda *_: fail_run(binding, delivery, plain),
            )
        self._after(binding, delivery, decision)

    async def reject(self, binding: Binding, delivery: DeliveryRecord, reason: str) -> None:
        """Fail the run of a delivery that cannot be processed, naming run and step."""
        exc = InvalidMessageError(f"run {delivery.run_id!r} step {delivery.step!r}: {reason}")
        decision = await transact(
            self.engine.store,
            delivery.run_id,
            delivery.fence,
            lambda *_: fail_run(binding, delivery, exc),
        )
        self._after(binding, delivery, decision)

    async def sent(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        journal: JournalCursor,
        sends: list[tuple[int, Output]],
    ) -> None:
        """Commit events a step sent as deliveries (fenced by its attempt), then publish.

        Each send is journaled by its index in the invocation: a re-run of the step (a
        crash, a collect answer, a resume) finds it sent and sends nothing twice.
        """
        marks = send_journal_id(journal.journal_id)
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            done = set()
            if not journal.fresh:
                done = {n for n, _ in sends if await txn.journal_get(marks, n) is not None}
            decision = on_events_sent(binding, txn.run, journal.journal_id, sends, done)
            await apply(txn, decision.writes)
        self._after(binding, delivery, decision)

    async def collect(
        self, binding: Binding, delivery: DeliveryRecord, need: CollectNeeded
    ) -> list[Event] | None:
        """The answer to a ``collect_events`` call, committed (and journaled) first."""
        async with self.engine.store.locked(delivery.run_id, delivery.fence) as txn:
            journal = collect_journal_id(invocation_journal(delivery))
            mark = await txn.journal_get(journal, need.index)
            decision = on_collect(binding, txn.run, delivery, need, mark)
            await apply(txn, decision.writes)
        answer: list[Event] | None = decision.answer
        return answer

    def _after(self, binding: Binding, delivery: DeliveryRecord, decision: Decision) -> None:
        """After the commit: log a failed run, keep a live result, publish, wake waiters."""
        run_id = delivery.run_id
        for write in decision.writes:
            if isinstance(write, SetStatus) and write.status == "failed" and write.error:
                error = write.error
                kind = error.get("exception_type", error.get("kind"))
                message = error.get("exception_message", error.get("message", ""))
                log.warning("run %s step %s failed: %s: %s", run_id, delivery.step, kind, message)
        if decision.stop is not None:
            self.engine.remember_result(run_id, decision.stop)
        self.engine.publish(binding, run_id, decision.publish)
        self.engine.notify(run_id, finished=decision.finished)


__all__ = ["Completer", "CompletionHost"]
