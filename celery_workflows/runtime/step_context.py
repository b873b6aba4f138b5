"""What a Context does inside a step: one invocation of one delivery.

Events a step sends are buffered and become deliveries in the completion transaction
(published after commit). ``collect_events`` and ``wait_for_event`` cannot block a step
on the database synchronously, so on first call they stop the step with a control-flow
exception; the engine commits what they need and, for ``collect_events``, runs the step
again from the top with the answer (its earlier edits are journaled, so not repeated).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .._serializers import BaseSerializer
from .._signature import StepSpec
from ..context.state_store import InMemoryStateStore, StateStore
from ..events import Event
from ..store.base import DeliveryRecord, RunStore, utcnow
from . import verbose as trace
from .codec import event_type_name
from .deferral import DeferredCommit
from .routing import Output, delivery_scope
from .snapshots import REWAIT, build_snapshot
from .state import JOURNAL_GENERATION, JournalCursor, RunStateBackend, invocation_journal
from .waits import timed_out_waiter_id, waiter_record

if TYPE_CHECKING:
    from .binding import Binding


class StepHost(Protocol):
    """What a step's invocation needs of the engine, and no more."""

    @property
    def store(self) -> RunStore: ...

    async def append_stream(
        self, binding: Binding, run_id: str, event: Event, key: str | None
    ) -> int: ...

    async def commit_sends(
        self,
        binding: Binding,
        delivery: DeliveryRecord,
        journal: JournalCursor,
        sends: list[tuple[int, Output]],
    ) -> None: ...


class StepSuspended(BaseException):
    """Control flow: the step waits for an event (BaseException so user code won't eat it)."""

    def __init__(self, waiter: dict[str, Any], waiter_event: Event | None) -> None:
        super().__init__("step suspended in wait_for_event")
        self.waiter = waiter
        self.waiter_event = waiter_event


class CollectNeeded(BaseException):
    """Control flow: ``collect_events`` needs a locked transaction before the step goes on."""

    def __init__(self, index: int, buffer_id: str, event: Event, expected: list[type[Event]]):
        super().__init__("collect_events needs the run lock")
        self.index = index
        self.buffer_id = buffer_id
        self.event = event
        self.expected = expected


@dataclass
class Invocation:
    """One run of a step body for a claimed delivery."""

    engine: StepHost
    binding: Binding
    delivery: DeliveryRecord
    spec: StepSpec
    event: Event  # the decoded input event
    collected: dict[int, list[Event] | None] = field(default_factory=dict)
    #: The body runs again in the same attempt (its completion could not be stored).
    again: bool = False
    pending_writes: list[asyncio.Task[Any]] = field(default_factory=list)
    _stream_index: int = 0
    _unsent: list[tuple[int, Output]] = field(default_factory=list)
    _send_index: int = 0
    _send_task: asyncio.Task[None] | None = None
    _collect_index: int = 0

    def __post_init__(self) -> None:
        d = self.delivery
        # A re-run of the body in the same attempt (after a collect_events answer) has
        # marks from its first round: only the first round of a first attempt is fresh.
        journal_id = invocation_journal(d)
        fresh = (
            not self.collected and not self.again and d.attempt == 1 and journal_id == d.delivery_id
        )
        self.journal = JournalCursor(journal_id, fresh=fresh)
        self.deferral = DeferredCommit(self.pending_writes)
        backend = RunStateBackend(
            self.engine.store,
            d.run_id,
            self.binding.codec,
            self.binding.state_type,
            fence=d.fence,
            journal=self.journal,
            where=f"run {d.run_id!r} step {d.step!r}",
            deferral=self.deferral,
        )
        self.store: StateStore[Any] = InMemoryStateStore.over(backend)

    @property
    def run_id(self) -> str:
        """The run's id (the step port's)."""
        return self.delivery.run_id

    @property
    def scope(self) -> tuple[tuple[str, int, int], ...]:
        """Fan-out lineage of this delivery, inherited by the events it emits."""
        return delivery_scope(self.delivery)

    def send_event(self, event: Event, step: str | None) -> None:
        """Send ``event`` (to ``step`` or every accepting step): it is committed as a
        delivery at the step's next await point, and published after that commit, so it
        reaches its steps while the sender still runs (DESIGN invariant 9)."""
        if step is not None:
            self.binding.check_target(step, event)
        if self.binding.workflow._verbose:
            trace.added(event)
        self._unsent.append((self._send_index, Output(event, step, self.scope)))
        self._send_index += 1
        if self._send_task is None:
            # One commit for the sends of one stretch of the step between two awaits.
            self._send_task = asyncio.ensure_future(self._commit_sends())
            self.pending_writes.append(self._send_task)

    def take_unsent(self) -> tuple[tuple[int, Output], ...]:
        """At the step's end: the sends made since its last await, taken out of the
        pending commit (they go in the completion transaction, with the end itself: a
        wait is registered in the same commit as what was sent just before it)."""
        if self._send_task is not None:
            self._send_task.cancel()  # not started: it never runs
            self.pending_writes.remove(self._send_task)
            self._send_task = None
        unsent, self._unsent = tuple(self._unsent), []
        return unsent

    async def _commit_sends(self) -> None:
        self._send_task = None  # sends from here on go in the next commit
        sends, self._unsent = self._unsent, []
        await self.engine.commit_sends(self.binding, self.delivery, self.journal, sends)

    def write_event_to_stream(self, event: Event | None) -> None:
        """Append to the run's stream now; the write is awaited before completion."""
        if event is None:
            return
        key = f"{self.journal.journal_id}:s{self._stream_index}"
        self._stream_index += 1
        coro = self.engine.append_stream(self.binding, self.delivery.run_id, event, key)
        self.pending_writes.append(asyncio.ensure_future(coro))

    async def flush(self) -> None:
        """Wait for the stream writes and sends the step started (all of them, also when
        one fails; the first failure is raised)."""
        first: BaseException | None = None
        while self.pending_writes:
            writes, self.pending_writes = self.pending_writes, []
            for result in await asyncio.gather(*writes, return_exceptions=True):
                if isinstance(result, BaseException) and first is None:
                    first = result
        if first is not None:
            raise first

    def collect_events(
        self, event: Event, expected: list[type[Event]], buffer_id: str | None
    ) -> list[Event] | None:
        """Answer from the committed collect transaction, or ask the engine for it."""
        index = self._collect_index
        self._collect_index += 1
        if index in self.collected:
            return self.collected[index]
        raise CollectNeeded(index, buffer_id or "default", event, list(expected))

    def wait_for_event(
        self,
        event_type: type[Event],
        waiter_event: Event | None,
        waiter_id: str | None,
        requirements: dict[str, Any] | None,
        timeout: float | None = None,
    ) -> Event:
        """The awaited event if it arrived, else suspend the step until it does."""
        name = event_type_name(event_type)
        wid = waiter_id or f"waiter_{name}_{sorted((requirements or {}).items())}"
        resolved = self.delivery.extra.get("resolved", {})
        if timed_out_waiter_id(self.delivery) == wid:
            raise TimeoutError(f"Timed out waiting for {event_type.__name__}")
        if wid in resolved:
            return self.binding.codec.decode_event(resolved[wid])
        if waiter_id is None:
            # A waiter restored from a snapshot (maybe made by upstream) has an id of its
            # maker's choosing; an unnamed wait takes the answer of its type.
            for payload in resolved.values():
                event = self.binding.codec.decode_event(payload)
                if event_type_name(event) == name:
                    return event
        # The resumed invocation keeps this one's journal: it is for this retry generation.
        retries = int((self.delivery.extra.get("retry") or {}).get("count", 0))
        extra = {**self.delivery.extra, JOURNAL_GENERATION: retries}
        if name in extra.pop(REWAIT, ()):
            waiter_event = None  # asked before the snapshot; the wait is only registered
        waiter = waiter_record(
            waiter_id=wid,
            step=self.delivery.step,
            journal_id=self.journal.journal_id,
            delivery_id=self.delivery.delivery_id,
            event=self.delivery.event,
            waiting_for=name,
            requirements=requirements,
            resolved=resolved,
            extra=extra,
            timeout=timeout,
            default_id=waiter_id is None,
        )
        raise StepSuspended(waiter, waiter_event)

    def snapshot(self, serializer: BaseSerializer, include_state: bool) -> dict[str, Any]:
        """``ctx.to_dict()`` inside the step: the run's committed snapshot, with the state
        of the step's last edit if its commit is still put off (see :mod:`.deferral`)."""
        run_id = self.delivery.run_id
        store = self.engine.store
        return build_snapshot(
            self.binding,
            store,
            run_id,
            serializer,
            include_state=include_state,
            state=self.deferral.pending_state,
        )

    def retry_info(self) -> Any:
        """The retry state of this delivery (``ctx.retry_info()``)."""
        from ..retry_policy import RetryInfo

        retry = self.delivery.extra.get("retry") or {}
        # As upstream: seconds since the first attempt started (0.0 on the first one).
        first = retry.get("first_started_at") or retry.get("first_failed_at")
        last = retry.get("last_failed_at")
        elapsed = (utcnow() - datetime.fromisoformat(first)).total_seconds() if first else 0.0
        error = retry.get("last_error")
        return RetryInfo(
            retry_number=int(retry.get("count", 0)),
            elapsed_seconds=elapsed,
            last_exception=_as_exception(self.binding.codec.decode_error(error)) if error else None,
            last_failed_at=datetime.fromisoformat(last) if last else None,
        )


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else Exception(str(exc))


def match_collect(buffer: Sequence[Event], expected: Sequence[type[Event]]) -> list[int] | None:
    """Indexes in ``buffer`` that fill ``expected`` in order, or None if not all there."""
    used: list[int] = []
    for wanted in expected:
        found = next(
            (i for i, ev in enumerate(buffer) if i not in used and type(ev) is wanted), None
        )
        if found is None:
            return None
        used.append(found)
    return used


__all__ = ["CollectNeeded", "Invocation", "StepSuspended", "match_collect"]
