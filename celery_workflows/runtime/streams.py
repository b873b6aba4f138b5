"""Fan-out streams and their fan-in: when a collecting (``list[E]``) step fires.

A step that returns a list opens a *stream*, one branch per event. The stream is recorded
in meta (``meta["streams"][stream] = {"step", "scope", "size"}``) and every delivery made
in a branch carries it in its scope. The members of a collecting step (events of a branch
that reach it) are buffered in arrival order (``meta["fanin"]["<step>|<stream>"]``).

The stream *settles* when no open delivery and no waiter is left in it: every branch has
delivered its member or was dropped (a step returned ``None``). Then each collecting step
bound to it fires once with its members, ``[]`` included (a fan-out that returned ``[]``
settles at once). ``Collect(Take(n))`` fires earlier, at the ``n``-th member.

Pure: the functions change a meta copy their caller owns and return deliveries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._signature import StepSpec
from .._step_graph import accepts_type
from .._stream_levels import collected_types, stream_levels
from ..collect import Take
from ..store.base import DeliveryRecord, NewDelivery
from .instrumentation import tagged
from .routing import child_id
from .waits import WaitTimeout

__all__ = [
    "bound_collectors",
    "collect_binding_id",
    "open_stream",
    "settle",
    "streams_of",
]


def bound_collectors(specs: Mapping[str, StepSpec]) -> dict[str, tuple[str, ...]]:
    """``{fan-out step: collecting steps bound to its streams}`` (computed once)."""
    levels = stream_levels(specs)
    bound: dict[str, tuple[str, ...]] = {}
    for fan_out, inner in levels.items():
        bound[fan_out] = tuple(
            name
            for name, spec in specs.items()
            if spec.is_collect
            and any(
                accepts_type(t, collected_types(spec), spec.accept_event_subclasses) for t in inner
            )
        )
    return bound


def collect_binding_id(source: str, collector: StepSpec) -> str:
    """The id of the binding of ``collector`` to the streams ``source`` opens, as
    upstream's snapshots name it (``"<source>-><collector>:<member types>:<policy>:nearest"``)."""
    names = ",".join(f"{t.__module__}.{t.__qualname__}" for t in collected_types(collector))
    policy = collector.collection_policy
    card = policy.cardinality if policy is not None else None
    shown = f"Take({card.n})" if isinstance(card, Take) else type(card).__name__ if card else "All"
    return f"{source}->{collector.name}:{names}:{shown}:nearest"


def open_stream(meta: dict[str, Any], stream: str, opener: DeliveryRecord, size: int) -> None:
    """Record a stream the fan-out step of ``opener`` opened, in ``opener``'s scope."""
    meta.setdefault("streams", {})[stream] = {
        "step": opener.step,
        "scope": opener.extra.get("scope", []),
        "size": size,
        # What a collecting step fired with no member runs on (its input event).
        "event": opener.event,
    }


def streams_of(scope: Iterable[Sequence[Any]]) -> list[str]:
    """The stream ids of a scope, innermost first."""
    return [str(level[0]) for level in reversed(list(scope))]


def settle(
    meta: dict[str, Any],
    streams: Sequence[str],
    still_open: Sequence[DeliveryRecord | NewDelivery],
    bound: Mapping[str, tuple[str, ...]],
) -> list[NewDelivery]:
    """Release the collecting steps of each of ``streams`` (innermost first) that has
    settled: nothing in ``still_open`` (the run's open deliveries after this transaction)
    or in meta's waiters is in it any more."""
    released: list[NewDelivery] = []
    for stream in streams:
        record = meta.get("streams", {}).get(stream)
        if record is None or _live(stream, [*still_open, *released], meta):
            continue
        del meta["streams"][stream]
        for collector in bound.get(record["step"], ()):
            buf = meta.get("fanin", {}).pop(f"{collector}|{stream}", None)
            if buf is not None and buf["released"]:
                continue
            members = [p for _, p in buf["items"]] if buf is not None else []
            released.append(
                NewDelivery(
                    child_id(stream, f"collect/{collector}"),
                    collector,
                    members[-1] if members else record["event"],
                    parent_id=stream,
                    extra={"batch": members, "scope": record["scope"], **tagged(meta)},
                )
            )
    return released


def _live(
    stream: str, deliveries: Sequence[DeliveryRecord | NewDelivery], meta: dict[str, Any]
) -> bool:
    for d in deliveries:
        # A wait's timeout delivery is not work of its own: its waiter stands for it.
        if WaitTimeout.of(d) is not None:
            continue
        if stream in streams_of(d.extra.get("scope", [])):
            return True
    return any(
        stream in streams_of((w.get("extra") or {}).get("scope", []))
        for w in meta.get("waiters", [])
    )
