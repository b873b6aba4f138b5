"""Context snapshots in upstream's v2 shape (``ctx.to_dict()`` / ``Context.from_dict()``).

A snapshot taken here loads in upstream and the other way round: state is encoded per key
(DictState) or whole (typed state) with the given serializer; queued and in-progress work
items become deliveries again on resume, waiters and collect buffers go back into meta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .._serializers import BaseSerializer, JsonSerializer
from ..errors import ContextSerdeError
from ..events import Event
from .context_types import CURRENT_SERIALIZED_VERSION, SerializedContext
from .state_store import DictState, default_state, encode_state_payload

SNAPSHOT_VERSION = CURRENT_SERIALIZED_VERSION


def decode_state_payload(
    payload: dict[str, Any], serializer: BaseSerializer, state_type: type[BaseModel]
) -> BaseModel:
    """Inverse of :func:`encode_state_payload` (a missing section gives default state)."""
    if not payload:
        return default_state(state_type)
    store_type = payload.get("store_type", "in_memory")
    if store_type != "in_memory":
        raise ContextSerdeError(f"Cannot restore state of store_type {store_type!r}")
    data = payload.get("state_data")
    if payload.get("state_type") == "DictState" or (isinstance(data, dict) and "_data" in data):
        items = (data or {}).get("_data", {})
        try:
            return DictState(_data={k: serializer.deserialize(v) for k, v in items.items()})
        except Exception as exc:
            raise ContextSerdeError(f"Failed to deserialize state: {exc}") from exc
    if isinstance(data, str):
        value = serializer.deserialize(data)
    elif isinstance(serializer, JsonSerializer):
        value = serializer.deserialize_value(data)
    else:
        value = data
    if isinstance(value, dict) and issubclass(state_type, BaseModel):
        if value.get("__is_pydantic") and "value" in value:
            # A model of a class not registered here (renamed, or named by the other
            # package): the workflow declares the state's type, so validate its fields.
            value = value["value"]
        value = state_type.model_validate(value)
    if not isinstance(value, BaseModel):
        raise ContextSerdeError(f"state decoded to {type(value).__name__}, not a model")
    return value


@dataclass
class QueuedWork:
    """A work item of a snapshot: an event for a step, with its retry history.

    Times are POSIX seconds, as the snapshot keeps them. ``attempts`` counts the failed
    attempts so far; ``not_before`` is when a retry waiting out its delay is due.
    """

    step: str
    event: Event
    attempts: int = 0
    first_attempt_at: float | None = None
    last_failed_at: float | None = None
    #: ``{"exception_type": ..., "exception_message": ...}`` of the last failure.
    last_exception: dict[str, Any] | None = None
    not_before: float | None = None
    #: The fan-out streams the item is in, outermost first (upstream's ``scope_path``).
    scope_path: list[str] = field(default_factory=list)


@dataclass
class SavedStream:
    """An open fan-out stream of a snapshot: the step whose returned list opened it, the
    streams that step ran in (outermost first) and its collect buffers.

    ``buffers`` maps a collecting step to its members so far (arrival order) and whether
    a ``Take(n)`` already released it.
    """

    stream_id: str
    source_step: str
    scope_path: list[str] = field(default_factory=list)
    buffers: dict[str, tuple[list[Event], bool]] = field(default_factory=dict)


@dataclass
class SavedWaiter:
    """A ``wait_for_event`` in flight, as a snapshot keeps it."""

    step: str
    trigger: Event
    waiter_id: str
    awaited: type[Event]
    scope_path: list[str] = field(default_factory=list)


@dataclass
class ParsedSnapshot:
    """A snapshot read back: state, whether the run was live, and its pending work."""

    state: BaseModel
    is_running: bool
    queued: list[QueuedWork] = field(default_factory=list)
    collect: dict[str, list[Event]] = field(default_factory=dict)
    waiters: list[SavedWaiter] = field(default_factory=list)
    #: Waits with requirements the snapshot does not keep (upstream writes only that
    #: there were some). The step runs again on its event and so waits again with its
    #: requirements, as upstream resumes it.
    rewaits: list[SavedWaiter] = field(default_factory=list)
    #: Open fan-out streams by id, with what their collecting steps buffered.
    streams: dict[str, SavedStream] = field(default_factory=dict)


def _parse_waiter(
    step: str, waiter: dict[str, Any], serializer: BaseSerializer, types: JsonSerializer
) -> SavedWaiter:
    name = str(waiter["waiting_for_event"])
    awaited = types.lookup(name)
    if not (isinstance(awaited, type) and issubclass(awaited, Event)):
        raise ContextSerdeError(
            f"waiter of step {step!r} awaits {name!r}, which is no registered event class"
        )
    trigger = _decode_event(waiter["event"], serializer)
    path = [str(s) for s in waiter.get("scope_path") or []]
    return SavedWaiter(step, trigger, str(waiter["waiter_id"]), awaited, path)


def _decode_event(raw: Any, serializer: BaseSerializer) -> Event:
    value = serializer.deserialize(raw) if isinstance(raw, str) else raw
    if isinstance(value, dict) and isinstance(serializer, JsonSerializer):
        value = serializer.deserialize_value(value)
    if not isinstance(value, Event):
        raise ContextSerdeError(f"snapshot work item is not an event: {str(raw)[:120]}")
    return value


def parse_snapshot(
    data: dict[str, Any],
    serializer: BaseSerializer,
    state_type: type[BaseModel],
    types: JsonSerializer,
) -> ParsedSnapshot:
    """Read a snapshot of any version up to the current one (ContextSerdeError on a
    malformed or newer one).

    Class names the snapshot records outside serialized values (the state's type, the
    event a waiter awaits) resolve against ``types`` only: nothing is imported.
    """
    if not isinstance(data, dict):
        raise ContextSerdeError("a context snapshot must be a dict")
    try:
        # Older versions (v0, v1) are migrated; a newer one or a malformed section is
        # refused here, before anything of it is used (upstream's rule and message).
        data = SerializedContext.from_dict_auto(data).model_dump()
    except (ValidationError, ValueError) as exc:
        raise ContextSerdeError(f"Context dict specified in an invalid format: {exc}") from exc
    state_payload = data.get("state") or {}
    stype = _state_type_of(state_payload, state_type, types)
    parsed = ParsedSnapshot(
        state=decode_state_payload(state_payload, serializer, stype),
        is_running=bool(data.get("is_running", False)),
    )
    for step, worker in (data.get("workers") or {}).items():
        for item in [*worker.get("in_progress", []), *worker.get("queue", [])]:
            parsed.queued.append(_queued_work(step, item, serializer))
        for buffer_id, events in (worker.get("collected_events") or {}).items():
            parsed.collect[f"{step}|{buffer_id}"] = [_decode_event(e, serializer) for e in events]
        for waiter in worker.get("collected_waiters", []):
            found = _parse_waiter(step, waiter, serializer, types)
            (parsed.rewaits if waiter.get("has_requirements") else parsed.waiters).append(found)
    parsed.streams = _parse_streams(data, serializer)
    return parsed


def binding_target(binding_id: str) -> str:
    """The collecting step of a collect binding id (``"<source>-><target>:<types>:..."``,
    upstream's form)."""
    return binding_id.partition("->")[2].partition(":")[0]


def _parse_streams(data: dict[str, Any], serializer: BaseSerializer) -> dict[str, SavedStream]:
    streams = {
        sid: SavedStream(
            str(sid), str(raw["source_step"]), [str(s) for s in raw.get("scope_path") or []]
        )
        for sid, raw in (data.get("streams") or {}).items()
    }
    for release in (data.get("collection_release_states") or {}).values():
        stream = streams.get(str(release["stream_id"]))
        if stream is None:
            # Its stream closed: the release fired already, or never will (upstream
            # calls such a snapshot corrupted); nothing of it can be resumed.
            continue
        members = [_decode_event(e, serializer) for e in release.get("buffer") or []]
        target = binding_target(str(release["binding_id"]))
        stream.buffers[target] = (members, bool(release.get("released")))
    return streams


def _queued_work(step: str, item: dict[str, Any], serializer: BaseSerializer) -> QueuedWork:
    error = item.get("last_exception")
    return QueuedWork(
        step=step,
        event=_decode_event(item["event"], serializer),
        attempts=int(item.get("attempts") or 0),
        first_attempt_at=item.get("first_attempt_at"),
        last_failed_at=item.get("last_failed_at"),
        last_exception=error if isinstance(error, dict) and "exception_type" in error else None,
        not_before=item.get("not_before"),
        scope_path=[str(s) for s in item.get("scope_path") or []],
    )


def _state_type_of(
    payload: dict[str, Any], default: type[BaseModel], types: JsonSerializer
) -> type[BaseModel]:
    name, module = payload.get("state_type"), payload.get("state_module")
    if not name or name == "DictState" or name == default.__name__:
        return default
    found = types.lookup(f"{module}.{name}")
    return found if isinstance(found, type) and issubclass(found, BaseModel) else default


def empty_worker() -> dict[str, Any]:
    """The per-step section of a snapshot with nothing in it."""
    return {
        "queue": [],
        "in_progress": [],
        "collected_events": {},
        "collect_generations": {},
        "static_collect_events": [],
        "collected_waiters": [],
    }


def work_item(
    event_json: str,
    item_id: str,
    retry: QueuedWork | None = None,
    scope_path: list[str] | None = None,
) -> dict[str, Any]:
    """A queued work item in upstream's shape (``retry``: its retry history, if any;
    ``scope_path``: the fan-out streams it is in, outermost first)."""
    return {
        "event": event_json,
        "bound_events": None,
        "attempts": retry.attempts if retry else 0,
        "first_attempt_at": retry.first_attempt_at if retry else None,
        "last_exception": retry.last_exception if retry else None,
        "last_failed_at": retry.last_failed_at if retry else None,
        "recovery_counts": {},
        "not_before": retry.not_before if retry else None,
        "scope_path": scope_path or [],
        "collection_release_payload": None,
        "work_item_id": item_id,
    }


def snapshot_dict(
    state: BaseModel,
    serializer: BaseSerializer,
    *,
    is_running: bool,
    workers: dict[str, dict[str, Any]],
    streams: dict[str, dict[str, Any]] | None = None,
    releases: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a v2 snapshot (``streams`` and ``releases``: the open fan-out streams and
    their collect buffers, in upstream's ``streams`` / ``collection_release_states``)."""
    return {
        "version": SNAPSHOT_VERSION,
        "state": encode_state_payload(state, serializer),
        "is_running": is_running,
        "workers": workers,
        "stream_seq": 0,
        "work_item_seq": 0,
        "invocation_seq": 0,
        "deliveries": [],
        "streams": streams or {},
        "collection_release_states": releases or {},
        "elapsed_alive": 0.0,
        "last_alive_stamp": None,
        "journal_seq": 0,
    }


__all__ = [
    "ParsedSnapshot",
    "QueuedWork",
    "SavedStream",
    "SavedWaiter",
    "binding_target",
    "decode_state_payload",
    "empty_worker",
    "encode_state_payload",
    "parse_snapshot",
    "snapshot_dict",
    "work_item",
]
