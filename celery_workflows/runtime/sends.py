"""What a step sends and collects, as pure decisions: sent events become journaled
deliveries (at the step's next await, or with its end); ``collect_events`` answers are
journaled. See :mod:`.transitions` for the shape."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..events import (
    InputRequiredEvent,
    StopEvent,
)
from ..store.base import DeliveryRecord, JournalMark, NewDelivery, RunRecord
from .binding import Binding
from .routing import Output
from .state import collect_journal_id, invocation_journal, send_journal_id
from .step_context import CollectNeeded, match_collect
from .writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    PutJournal,
    SetMeta,
    SetStatus,
    Write,
    copy_meta,
)


@dataclass
class Sent:
    """What a batch of sends becomes: its writes, its deliveries, a sent StopEvent."""

    writes: list[Write]
    added: list[NewDelivery]
    stop: StopEvent | None


def route_sent(
    binding: Binding,
    meta: dict[str, Any],
    journal_id: str,
    sends: Sequence[tuple[int, Output]],
    done: Collection[int],
) -> Sent:
    """Route the sends not ``done`` (journaled) into ``meta``, outside any fan-out
    stream; each is journaled."""
    sent = Sent([], [], None)
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
        # As upstream, a sent event leaves the sender's fan-out stream: it never joins a
        # batch, and what the steps it wakes return is no member either.
        unscoped = Output(out.event, out.step)
        sent.added += binding.router.route(meta, [unscoped], f"{journal_id}/send{n}").deliveries
    return sent


def completed_writes(binding: Binding, run_id: str, stop: StopEvent) -> list[Write]:
    payload = binding.codec.encode_event(stop)
    return [AppendStream(payload, f"{run_id}:stop"), SetStatus("completed", result=payload)]


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
    sent = route_sent(binding, meta, journal_id, sends, done)
    writes = [*sent.writes, AddDeliveries(tuple(sent.added)), SetMeta(meta)]
    if sent.stop is not None:
        writes += completed_writes(binding, run.run_id, sent.stop)
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


__all__ = ["Sent", "completed_writes", "on_collect", "on_events_sent", "route_sent"]
