"""Snapshots of stored runs, and runs rebuilt from snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from .._serializers import BaseSerializer
from .._sync import run_sync
from ..context.snapshot import (
    ParsedSnapshot,
    QueuedWork,
    empty_worker,
    snapshot_dict,
    work_item,
)
from ..context.state_store import DictState
from ..store.base import DeliveryRecord, DeliveryStatus, NewDelivery, RunRecord, RunStore
from .binding import Binding
from .codec import event_type_name
from .routing import child_id
from .snapshot_streams import Renamer, saved_streams, scope_path, stream_meta
from .waits import is_pending_timeout, waiter_record


async def _load(store: RunStore, run_id: str) -> tuple[RunRecord, list[DeliveryRecord]]:
    """The run and the work a snapshot saves: its open deliveries; for a cancelled run,
    those its cancel closed (a cancel closes every open delivery, and nothing else
    closes one as cancelled)."""
    run = await store.get_run(run_id)
    statuses: list[DeliveryStatus] = ["pending", "running"]
    if run.status == "cancelled":
        statuses = ["cancelled"]
    return run, await store.list_deliveries(run_id, statuses)


def resumable(run: RunRecord) -> bool:
    """Whether a snapshot of ``run`` resumes it: while it goes on, and, as upstream,
    after a cancel (its snapshot keeps ``is_running`` true, its work and its waiters,
    so ``Context.from_dict`` then ``run(ctx=...)`` continues it). A run that completed,
    failed or timed out has nothing left to resume."""
    return not run.finished or run.status == "cancelled"


def _in_progress(delivery: DeliveryRecord) -> bool:
    """Whether a delivery was running (else queued), also once a cancel closed it: it
    was claimed after its last failure (a pending retry was claimed as often as it
    failed)."""
    if delivery.status != "cancelled":
        return delivery.status == "running"
    failures = int((delivery.extra.get("retry") or {}).get("count", 0))
    return delivery.attempt > failures


def build_snapshot(
    binding: Binding,
    store: RunStore,
    run_id: str,
    serializer: BaseSerializer,
    *,
    include_state: bool = True,
    state: BaseModel | None = None,
) -> dict[str, Any]:
    """The v2 snapshot of a stored run (sync: ``ctx.to_dict()`` is sync upstream);
    ``state``, if given, stands for the stored state."""
    run, open_deliveries = run_sync(lambda: _load(store, run_id), inline=store.never_suspends)
    codec = binding.codec
    workers = {name: empty_worker() for name in binding.specs}
    waiters = run.meta.get("waiters") or []
    for d in open_deliveries:
        if d.step not in workers or is_pending_timeout(d, run.meta):
            # A pending wait timeout is not a work item (the waiter itself is saved); one
            # that is re-running its step is, and its waiter is not.
            continue
        event = codec.decode_event(d.event)
        path = scope_path(d.extra.get("scope"))
        item = work_item(serializer.serialize(event), d.delivery_id, _retry_of(d, event), path)
        workers[d.step]["in_progress" if _in_progress(d) else "queue"].append(item)
    for key, payloads in (run.meta.get("collect") or {}).items():
        step, _, buffer_id = key.partition("|")
        if step in workers and payloads:
            events = [serializer.serialize(codec.decode_event(p)) for p in payloads]
            workers[step]["collected_events"][buffer_id] = events
            workers[step]["collect_generations"][buffer_id] = 1
    for waiter in waiters:
        if waiter["step"] in workers and "timing_out" not in waiter:
            workers[waiter["step"]]["collected_waiters"].append(
                _waiter_item(waiter, codec, serializer)
            )
    if not include_state:
        state = DictState()
    elif state is None:
        state = codec.decode_state(run.state, for_edit=False)
    streams, releases = saved_streams(binding, run.meta, open_deliveries, serializer)
    return snapshot_dict(
        state,
        serializer,
        is_running=resumable(run),
        workers=workers,
        streams=streams,
        releases=releases,
    )


#: Marks a delivery that re-runs a step whose wait (with requirements) a snapshot kept
#: without them: the wait is registered again, its waiter event not streamed again.
REWAIT = "rewait"


def _seconds(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _retry_of(delivery: DeliveryRecord, event: Any) -> QueuedWork | None:
    """The retry history of a pending retry, in the snapshot's terms (POSIX seconds)."""
    retry = delivery.extra.get("retry")
    if not retry:
        return None
    error = retry.get("last_error") or None
    return QueuedWork(
        step=delivery.step,
        event=event,
        attempts=int(retry.get("count", 0)),
        # The first failure stands for the first attempt (the store keeps no start time).
        first_attempt_at=_seconds(retry.get("first_failed_at")),
        last_failed_at=_seconds(retry.get("last_failed_at")),
        last_exception={k: error[k] for k in ("exception_type", "exception_message")}
        if error
        else None,
        not_before=delivery.not_before.timestamp() if delivery.not_before else None,
    )


def _when(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _resumed(delivery_id: str, work: QueuedWork, codec: Any, rename: Renamer) -> NewDelivery:
    """A queued work item as a delivery: a retry keeps its count, times and due time,
    an item of a fan-out stream its place in it."""
    extra: dict[str, Any] = {"scope": rename.scope(work.scope_path)} if work.scope_path else {}
    if work.attempts:
        first = work.first_attempt_at or work.last_failed_at
        extra["retry"] = {
            "count": work.attempts,
            "first_failed_at": _iso(first),
            "last_failed_at": _iso(work.last_failed_at or first),
            "last_error": work.last_exception,
        }
        extra["retry"] = {k: v for k, v in extra["retry"].items() if v is not None}
    event = codec.encode_event(work.event)
    return NewDelivery(
        delivery_id, work.step, event, not_before=_when(work.not_before), extra=extra
    )


def _iso(seconds: float | None) -> str | None:
    when = _when(seconds)
    return when.isoformat() if when is not None else None


def _waiter_item(waiter: dict[str, Any], codec: Any, serializer: BaseSerializer) -> dict[str, Any]:
    waiter_id = waiter["waiter_id"]
    if waiter.get("default_id"):
        # Upstream derives an unnamed waiter's id from the awaited type, requirements and
        # work item; write it that way so upstream's re-run of the step finds its answer.
        # With requirements, upstream's legacy id (no work item): upstream's step, run
        # again on resume, finds this waiter by it and fills in the requirements.
        requirements = waiter.get("requirements") or {}
        waiter_id = f"waiter_{waiter['waiting_for']}_{requirements}"
        if not requirements:
            waiter_id += f"_{waiter['delivery_id']}"
    return {
        "waiter_id": waiter_id,
        "event": serializer.serialize(codec.decode_event(waiter["event"])),
        "bound_events": None,
        "waiting_for_event": waiter["waiting_for"],
        "has_requirements": bool(waiter.get("requirements")),
        "resolved_event": None,
        "scope_path": scope_path((waiter.get("extra") or {}).get("scope")),
        "collection_release_payload": None,
        "work_item_id": waiter["delivery_id"],
    }


def resume_plan(
    binding: Binding, run_id: str, snapshot: ParsedSnapshot
) -> tuple[list[NewDelivery], dict[str, Any]]:
    """Deliveries and meta that continue a run captured mid-flight in ``snapshot``."""
    codec = binding.codec
    rename = Renamer(run_id)
    deliveries = [
        _resumed(child_id(f"{run_id}:resume", i), work, codec, rename)
        for i, work in enumerate(snapshot.queued)
        if work.step in binding.specs
    ]
    for i, wait in enumerate(snapshot.rewaits):
        if wait.step in binding.specs:
            extra: dict[str, Any] = {REWAIT: [event_type_name(wait.awaited)]}
            if wait.scope_path:
                extra["scope"] = rename.scope(wait.scope_path)
            again = child_id(f"{run_id}:resume", f"rewait/{i}")
            event = codec.encode_event(wait.trigger)
            deliveries.append(NewDelivery(again, wait.step, event, extra=extra))
    collect = {k: [codec.encode_event(e) for e in evs] for k, evs in snapshot.collect.items()}
    meta: dict[str, Any] = {"collect": collect} if collect else {}
    meta |= stream_meta(binding, snapshot.streams, rename)
    waiters = []
    for i, wait in enumerate(snapshot.waiters):
        origin = child_id(f"{run_id}:resume", f"waiter/{i}")
        waiters.append(
            waiter_record(
                waiter_id=wait.waiter_id,
                step=wait.step,
                journal_id=origin,
                delivery_id=origin,
                event=codec.encode_event(wait.trigger),
                waiting_for=event_type_name(wait.awaited),
                extra={"scope": rename.scope(wait.scope_path)} if wait.scope_path else None,
            )
        )
    if waiters:
        meta["waiters"] = waiters
    return deliveries, meta


__all__ = ["REWAIT", "build_snapshot", "resumable", "resume_plan"]
