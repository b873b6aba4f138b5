"""Fan-out streams in snapshots: open streams and what their collecting steps buffered,
written in upstream's ``streams`` / ``collection_release_states`` and read back into meta.

A snapshot taken while a fan-in collects keeps its members and its open stream, so a run
resumed from it releases the join with every member, not only those arriving after the
resume. Stream ids are run-scoped here (``<run>:<digest>``), so a resumed run renames the
snapshot's streams into its own id space, in every scope that names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._serializers import BaseSerializer
from ..context.snapshot import SavedStream
from ..events import Event
from ..store.base import DeliveryRecord
from .binding import Binding
from .routing import child_id
from .streams import collect_binding_id, streams_of
from .waits import is_pending_timeout

__all__ = ["Renamer", "saved_streams", "scope_path", "stream_meta"]


def scope_path(scope: Sequence[Sequence[Any]] | None) -> list[str]:
    """The stream ids of a scope, outermost first (upstream's ``scope_path``)."""
    return [str(level[0]) for level in scope or []]


def saved_streams(
    binding: Binding,
    meta: dict[str, Any],
    open_deliveries: Sequence[DeliveryRecord],
    serializer: BaseSerializer,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The run's open streams and their collect buffers, in upstream's snapshot shape."""
    records: dict[str, Any] = meta.get("streams") or {}
    fanin: dict[str, Any] = meta.get("fanin") or {}
    counts = _open_work_items(binding, meta, open_deliveries)
    streams: dict[str, dict[str, Any]] = {}
    releases: dict[str, dict[str, Any]] = {}
    for sid, record in records.items():
        ids = _binding_ids(binding, record["step"])
        streams[sid] = {
            "stream_id": sid,
            "source_step": record["step"],
            "scope_path": scope_path(record.get("scope")),
            "open_work_items": counts.get(sid, 0),
            "accepting_binding_ids": list(ids.values()),
        }
        for collector, binding_id in ids.items():
            buf = fanin.get(f"{collector}|{sid}")
            if buf is None:
                continue
            members = [binding.codec.decode_event(p) for _, p in buf["items"]]
            releases[f"{sid}:{binding_id}"] = {
                "binding_id": binding_id,
                "stream_id": sid,
                "buffer": [serializer.serialize(e) for e in members],
                "released": bool(buf["released"]),
            }
    return streams, releases


def _binding_ids(binding: Binding, source: str) -> dict[str, str]:
    return {
        name: collect_binding_id(source, binding.specs[name])
        for name in binding.collectors.get(source, ())
    }


def _open_work_items(
    binding: Binding, meta: dict[str, Any], open_deliveries: Sequence[DeliveryRecord]
) -> dict[str, int]:
    """Upstream's count of the work that keeps each stream open: the deliveries and
    waiters whose innermost stream it is, and one per unreleased collect binding of each
    stream opened inside it (its release is still to come)."""
    counts: dict[str, int] = {}

    def add(scope: Any, n: int = 1) -> None:
        inner = streams_of(scope or [])
        if inner:
            counts[inner[0]] = counts.get(inner[0], 0) + n

    for d in open_deliveries:
        if not is_pending_timeout(d, meta):
            add(d.extra.get("scope"))
    for waiter in meta.get("waiters") or []:
        if "timing_out" not in waiter:
            add((waiter.get("extra") or {}).get("scope"))
    fanin = meta.get("fanin") or {}
    for sid, record in (meta.get("streams") or {}).items():
        pending = [
            c
            for c in binding.collectors.get(record["step"], ())
            if not (fanin.get(f"{c}|{sid}") or {}).get("released")
        ]
        add(record.get("scope"), len(pending))
    return counts


class Renamer:
    """Maps a snapshot's stream ids into a resumed run's id space."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._names: dict[str, str] = {}

    def __call__(self, sid: str) -> str:
        if sid not in self._names:
            self._names[sid] = child_id(f"{self._run_id}:resume", f"stream/{sid}")
        return self._names[sid]

    def scope(self, path: Sequence[str]) -> list[list[Any]]:
        """A scope (``[[stream, position, size], ...]``) for a snapshot's ``scope_path``.
        Branch positions and sizes are not kept in snapshots; nothing decides on them."""
        return [[self(sid), 0, 0] for sid in path]


def stream_meta(
    binding: Binding, streams: Mapping[str, SavedStream], rename: Renamer
) -> dict[str, Any]:
    """Meta (``streams`` and ``fanin``) for a snapshot's open streams, renamed."""
    codec = binding.codec
    records: dict[str, Any] = {}
    fanin: dict[str, Any] = {}
    for sid, saved in streams.items():
        if saved.source_step not in binding.specs:
            continue  # the workflow lost the step that opened it: nothing collects it
        new = rename(sid)
        records[new] = {
            "step": saved.source_step,
            "scope": rename.scope(saved.scope_path),
            "size": 0,
            # A collecting step released with no member runs on this event (the opener's
            # input event, which a snapshot does not keep).
            "event": codec.encode_event(Event()),
        }
        for collector, (members, released) in saved.buffers.items():
            if collector in binding.specs:
                items = [[i, codec.encode_event(e)] for i, e in enumerate(members)]
                fanin[f"{collector}|{new}"] = {"items": items, "released": released}
    meta: dict[str, Any] = {"streams": records} if records else {}
    if fanin:
        meta["fanin"] = fanin
    return meta
