"""Pure routing: which deliveries an event becomes, given the run's meta.

No I/O here (but a warning logged for an event a collecting step drops). The engine
calls :func:`route` inside the completion transaction, under the run lock, with the
run's meta; the function mutates that meta copy (join buffers, fan-in buffers, waiters)
and returns the deliveries to insert.

Meta keys (all JSON-compatible when the codec is JSON):
- ``waiters``: open ``wait_for_event`` calls: step, journal id, trigger event, awaited type;
- ``joins``: ``{step: {param: [event payload, ...]}}`` for multi-parameter steps;
- ``fanin``: ``{"step|stream": {"size": n, "items": {index: payload}}}`` for ``list[E]``;
- ``collect``: ``{"step|buffer": [payload, ...]}`` for ``ctx.collect_events``;
- ``recoveries``: ``{handler: count}`` for ``@catch_error`` budgets;
- ``retained``: events nothing took when they came (no accepting step, no waiter), oldest
  first, for a ``wait_for_event`` registered later (see :mod:`.waits`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._signature import StepSpec
from ..collect import Take
from ..events import Event
from ..store.base import DeliveryRecord, NewDelivery
from .codec import Codec, event_type_name
from .instrumentation import tagged
from .retained import retain

log = logging.getLogger("celery_workflows.routing")


def child_id(parent_id: str, index: int | str) -> str:
    """Deterministic id of the ``index``-th output of ``parent_id``."""
    digest = hashlib.blake2b(f"{parent_id}/{index}".encode(), digest_size=10).hexdigest()
    return f"{parent_id.split(':', 1)[0]}:{digest}"


def delivery_scope(delivery: DeliveryRecord) -> tuple[tuple[str, int, int], ...]:
    """Fan-out lineage of ``delivery``, inherited by the events it emits."""
    return tuple((str(s[0]), int(s[1]), int(s[2])) for s in delivery.extra.get("scope", []))


@dataclass(frozen=True)
class Output:
    """One event a delivery emits (returned or sent), possibly addressed to one step."""

    event: Event
    step: str | None = None
    scope: tuple[tuple[str, int, int], ...] = ()


@dataclass
class Routed:
    """What :func:`route` decided."""

    deliveries: list[NewDelivery] = field(default_factory=list)
    unhandled: list[Event] = field(default_factory=list)


def waiter_matches(waiter: Mapping[str, Any], event: Event) -> bool:
    """Whether ``event`` answers ``waiter``: its exact type and every requirement."""
    return bool(
        waiter["waiting_for"] == event_type_name(event)
        and _matches_requirements(event, waiter.get("requirements") or {})
    )


def resume_delivery(waiter: Mapping[str, Any], payload: Any, seed: str) -> NewDelivery:
    """The delivery that runs a waiting step again with ``payload`` as its answer."""
    resolved = {**waiter.get("resolved", {}), waiter["waiter_id"]: payload}
    return NewDelivery(
        child_id(seed, f"resume/{waiter['waiter_id']}/{waiter['journal_id']}"),
        waiter["step"],
        waiter["event"],
        parent_id=waiter["delivery_id"],
        journal_id=waiter["journal_id"],
        extra={**waiter.get("extra", {}), "resolved": resolved},
    )


def _matches_requirements(event: Event, requirements: Mapping[str, Any]) -> bool:
    for key, value in requirements.items():
        actual = event.get(key, getattr(event, key, None)) if key in event else None
        if actual is None:
            actual = getattr(event, key, None)
        if actual != value:
            return False
    return True


class Router:
    """Routes events to the steps of one workflow."""

    def __init__(self, specs: Mapping[str, StepSpec], codec: Codec) -> None:
        self.specs = specs
        self.codec = codec

    def targets(self, event: Event, step: str | None) -> list[StepSpec]:
        """Steps that take ``event``: all accepting steps, or just ``step`` if given."""
        if step is not None:
            return [self.specs[step]]
        return [s for s in self.specs.values() if s.role == "step" and s.accepts(event)]

    def route(
        self,
        meta: dict[str, Any],
        outputs: Sequence[Output],
        parent_id: str,
    ) -> Routed:
        """Turn outputs into deliveries, buffering joins and fan-ins in ``meta``; an
        output nothing takes is reported in ``unhandled`` and retained in ``meta``."""
        routed = Routed()
        for index, out in enumerate(outputs):
            payload = self.codec.encode_event(out.event)
            handled = self._resume_waiters(meta, out.event, payload, f"{parent_id}/{index}", routed)
            targets = self.targets(out.event, out.step)
            for spec in targets:
                key = f"{index}/{spec.name}"
                self._deliver(meta, spec, out, payload, child_id(parent_id, key), parent_id, routed)
            if not targets and not handled:
                routed.unhandled.append(out.event)
                # Kept for a wait not registered yet (its step has not ended yet).
                retain(meta, out.event, payload)
        return routed

    def _deliver(
        self,
        meta: dict[str, Any],
        spec: StepSpec,
        out: Output,
        payload: Any,
        delivery_id: str,
        parent_id: str,
        routed: Routed,
    ) -> None:
        extra: dict[str, Any] = {"scope": [list(s) for s in out.scope], **tagged(meta)}
        if spec.is_collect and not self._fan_in(meta, spec, out, payload, extra):
            return
        if spec.is_join and not self._join(meta, spec, out.event, payload, extra):
            return
        routed.deliveries.append(
            NewDelivery(delivery_id, spec.name, payload, parent_id=parent_id, extra=extra)
        )

    def _join(
        self,
        meta: dict[str, Any],
        spec: StepSpec,
        event: Event,
        payload: Any,
        extra: dict[str, Any],
    ) -> bool:
        slots: dict[str, list[Any]] = meta.setdefault("joins", {}).setdefault(spec.name, {})
        fits = [
            (len(slots.get(param, [])), type(event) not in types, i, param)
            for i, (param, types) in enumerate(spec.event_params)
            if (isinstance(event, types) if spec.accept_event_subclasses else type(event) in types)
        ]
        if fits:
            # Arrival order: the event fills the emptiest slot that takes it, so two slots
            # of one type take events alternately; on a tie the slot of its exact type
            # (a subclass leaves the base-typed slot to a base event), then the first.
            param = min(fits)[3]
            slots.setdefault(param, []).append(payload)
        if not all(slots.get(param) for param, _ in spec.event_params):
            return False
        extra["join"] = {param: slots[param].pop(0) for param, _ in spec.event_params}
        return True

    def _fan_in(
        self, meta: dict[str, Any], spec: StepSpec, out: Output, payload: Any, extra: dict[str, Any]
    ) -> bool:
        """Buffer a member of ``spec``'s collection (see :mod:`.streams`); True, with
        ``extra`` filled, when the step fires now (its ``Take(n)`` reached). Events
        outside any stream (all that ``ctx.send_event`` sends) never join one: they are
        dropped with a warning, as upstream."""
        if not out.scope:
            log.warning(
                "Ignoring %s for collect step %r: it was sent outside any collection "
                "stream (e.g. via ctx.send_event) so it cannot join a batch.",
                type(out.event).__name__,
                spec.name,
            )
            return False
        stream, position, _ = out.scope[-1]
        buf = meta.setdefault("fanin", {}).setdefault(
            f"{spec.name}|{stream}", {"items": [], "released": False}
        )
        if buf["released"]:
            return False
        buf["items"].append([position, payload])
        policy = spec.collection_policy
        take = policy.cardinality if policy is not None else None
        if not isinstance(take, Take) or len(buf["items"]) < take.n:
            return False
        buf["released"] = True
        extra["batch"] = [p for _, p in buf["items"][: take.n]]
        extra["scope"] = [list(s) for s in out.scope[:-1]]
        return True

    def _resume_waiters(
        self, meta: dict[str, Any], event: Event, payload: Any, seed: str, routed: Routed
    ) -> bool:
        waiters: list[dict[str, Any]] = meta.get("waiters", [])
        matched = [
            w
            for w in waiters
            # A waiter marked timing_out is skipped: its timeout is re-running the step.
            if "timing_out" not in w and waiter_matches(w, event)
        ]
        for w in matched:
            waiters.remove(w)
            routed.deliveries.append(resume_delivery(w, payload, seed))
        return bool(matched)
