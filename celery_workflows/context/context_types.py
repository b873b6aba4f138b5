"""The shape of a Context snapshot (``ctx.to_dict()``), as upstream's
``workflows.context.context_types``: the version, the models of each section, and the
migration of older snapshots (v0, v1) to the current one.

Events inside a snapshot are serializer-encoded strings; the ``state`` section is a state
store payload (see ``state_store.InMemorySerializedState``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The snapshot format this package writes and the newest it reads. v0: the legacy format
#: of nested JSON strings; v1: a worker's ``in_progress`` is a list of event strings;
#: v2: ``in_progress`` holds full attempts (retry counts and times).
CURRENT_SERIALIZED_VERSION = 2


class SerializedContextV0(BaseModel):
    """The legacy (v0) snapshot: queues as JSON strings, no retry or waiter state."""

    state: dict[str, Any] = Field(default_factory=dict)
    streaming_queue: str = "[]"
    queues: dict[str, str] = Field(default_factory=dict)
    event_buffers: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    in_progress: dict[str, list[str]] = Field(default_factory=dict)
    accepted_events: list[tuple[str, str]] = Field(default_factory=list)
    broker_log: list[str] = Field(default_factory=list)
    is_running: bool = False
    waiting_ids: list[str] = Field(default_factory=list)


class SerializedCollectionReleasePayload(BaseModel):
    """The batch a ``list[E]`` collect step is invoked with."""

    binding_id: str
    stream_id: str
    events: list[str] = Field(default_factory=list)
    output_scope_path: list[str] = Field(default_factory=list)


class SerializedEventAttempt(BaseModel):
    """A queued event for a step, with its retry history."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    event: str
    bound_events: dict[str, str] | None = None
    attempts: int = 0
    first_attempt_at: float | None = None
    last_exception: Any = None
    last_failed_at: float | None = None
    recovery_counts: dict[str, int] = Field(default_factory=dict)
    not_before: float | None = None
    scope_path: list[str] = Field(default_factory=list)
    collection_release_payload: SerializedCollectionReleasePayload | None = None
    work_item_id: str | None = None


class SerializedInProgressAttempt(SerializedEventAttempt):
    """An event a step was running when the snapshot was taken."""

    worker_id: int | None = None
    invocation_id: str | None = None
    received: list[int] = Field(default_factory=list)
    collected_events: dict[str, list[str]] = Field(default_factory=dict)
    collect_generations: dict[str, int] = Field(default_factory=dict)


class SerializedWaiter(BaseModel):
    """A step suspended in ``ctx.wait_for_event``."""

    waiter_id: str
    event: str
    bound_events: dict[str, str] | None = None
    waiting_for_event: str
    has_requirements: bool = False
    resolved_event: str | None = None
    scope_path: list[str] = Field(default_factory=list)
    collection_release_payload: SerializedCollectionReleasePayload | None = None
    work_item_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def deserialize_requirements(cls, data: Any) -> Any:
        """An older waiter kept its ``requirements``; a non-empty one means it had some."""
        requirements = data.get("requirements") if isinstance(data, dict) else None
        if isinstance(requirements, dict) and requirements:
            data = {**data, "has_requirements": True}
        return data


class SerializedStepWorkerState(BaseModel):
    """One step's pending work: queue, in progress, collect buffers, waiters."""

    queue: list[SerializedEventAttempt] = Field(default_factory=list)
    in_progress: list[SerializedInProgressAttempt] = Field(default_factory=list)
    collected_events: dict[str, list[str]] = Field(default_factory=dict)
    collect_generations: dict[str, int] = Field(default_factory=dict)
    static_collect_events: list[str] = Field(default_factory=list)
    collected_waiters: list[SerializedWaiter] = Field(default_factory=list)


class SerializedDelivery(BaseModel):
    """An emitted event not yet routed."""

    invocation_id: str
    index: int
    event: str
    step_id: str | None = None
    recovery_counts: dict[str, int] = Field(default_factory=dict)
    scope_path: list[str] = Field(default_factory=list)


class SerializedCollectionStreamInstance(BaseModel):
    """An open ``list[E]`` stream."""

    stream_id: str
    source_step: str
    scope_path: list[str] = Field(default_factory=list)
    open_work_items: int = 0
    accepting_binding_ids: list[str] = Field(default_factory=list)


class SerializedCollectionReleaseState(BaseModel):
    """What one collect binding has buffered in one stream."""

    binding_id: str
    stream_id: str
    buffer: list[str] = Field(default_factory=list)
    released: bool = False


class SerializedContext(BaseModel):
    """The current (v2) snapshot of a Context."""

    version: int = CURRENT_SERIALIZED_VERSION
    state: dict[str, Any] = Field(default_factory=dict)
    is_running: bool = False
    workers: dict[str, SerializedStepWorkerState] = Field(default_factory=dict)
    stream_seq: int = 0
    work_item_seq: int = 0
    invocation_seq: int = 0
    deliveries: list[SerializedDelivery] = Field(default_factory=list)
    streams: dict[str, SerializedCollectionStreamInstance] = Field(default_factory=dict)
    collection_release_states: dict[str, SerializedCollectionReleaseState] = Field(
        default_factory=dict
    )
    elapsed_alive: float = 0.0
    last_alive_stamp: float | None = None
    journal_seq: int = 0

    @staticmethod
    def from_v0(v0: SerializedContextV0) -> SerializedContext:
        """A v2 snapshot of a v0 one: queued and in-progress events become queue entries,
        each step's buffers one ``default`` buffer (v0 kept no retries or waiters)."""
        workers: dict[str, SerializedStepWorkerState] = {}
        steps = set(v0.queues) | set(v0.in_progress) | set(v0.event_buffers)
        for step in sorted(steps - set(v0.waiting_ids)):
            events = [*v0.in_progress.get(step, []), *json.loads(v0.queues.get(step, "[]"))]
            buffered = [e for found in v0.event_buffers.get(step, {}).values() for e in found]
            workers[step] = SerializedStepWorkerState(
                queue=[SerializedEventAttempt(event=e) for e in events],
                collected_events={"default": buffered} if buffered else {},
            )
        return SerializedContext(state=v0.state, is_running=v0.is_running, workers=workers)

    @staticmethod
    def from_v1(data: dict[str, Any]) -> SerializedContext:
        """A v2 snapshot of a v1 one (whose ``in_progress`` entries were event strings)."""
        workers = {
            step: {
                **worker,
                "in_progress": [
                    {"event": e} if isinstance(e, str) else e for e in worker.get("in_progress", [])
                ],
            }
            for step, worker in (data.get("workers") or {}).items()
        }
        migrated = {**data, "version": CURRENT_SERIALIZED_VERSION, "workers": workers}
        return SerializedContext.model_validate(migrated)

    @staticmethod
    def from_dict_auto(data: dict[str, Any], serializer: Any = None) -> SerializedContext:
        """Read a snapshot of any supported version as the current one.

        No ``version``: v0. A version that is no int, or newer than this package reads,
        is a ValueError: reading it as an older format would silently drop work.
        ``serializer`` is accepted for upstream's signature; events stay encoded here.
        """
        version = data.get("version")
        if version is None:
            return SerializedContext.from_v0(SerializedContextV0.model_validate(data))
        if not isinstance(version, int) or version > CURRENT_SERIALIZED_VERSION:
            raise ValueError(
                f"Cannot load serialized workflow context with version={version!r}; this "
                f"library supports up to version {CURRENT_SERIALIZED_VERSION}. The payload "
                "was likely written by a newer version of llama-index-workflows."
            )
        if version == CURRENT_SERIALIZED_VERSION:
            return SerializedContext.model_validate(data)
        if version == 1:
            return SerializedContext.from_v1(data)
        return SerializedContext.from_v0(SerializedContextV0.model_validate(data))


__all__ = [
    "CURRENT_SERIALIZED_VERSION",
    "SerializedCollectionReleasePayload",
    "SerializedCollectionReleaseState",
    "SerializedCollectionStreamInstance",
    "SerializedContext",
    "SerializedContextV0",
    "SerializedDelivery",
    "SerializedEventAttempt",
    "SerializedInProgressAttempt",
    "SerializedStepWorkerState",
    "SerializedWaiter",
]
