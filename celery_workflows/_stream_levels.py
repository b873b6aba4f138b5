"""Stream levels of ``list[E]`` fan-outs, for the fan-in and join checks.

A step returning ``list[E]`` opens a stream level: the events it emits and everything
that 1:1 steps make of them belong to that level. A ``list[E]`` collect step bound to the
stream closes it, and its output surfaces one level up (a collect step that fans out
again opens a further level, collapsed the same way). A fan-in must bind to some stream,
and a multi-parameter join only fires when all its slots fill at one level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._signature import StepSpec
from ._step_graph import accepts_type, is_subclass
from .events import Event


def event_types(types: Iterable[Any]) -> list[type[Event]]:
    """The Event classes among ``types`` (``NoneType`` and the like left out)."""
    return [t for t in types if is_subclass(t, Event)]


def collected_types(spec: StepSpec) -> tuple[type[Event], ...]:
    """The element types of a collect step's ``list[E]`` parameter (empty otherwise)."""
    for name, types in spec.event_params:
        if name == spec.collection_name:
            return types
    return ()


def same_level_types(
    steps: Mapping[str, StepSpec], seeds: Iterable[Any], guard: frozenset[str]
) -> set[type[Event]]:
    """Event types reachable from ``seeds`` without leaving their stream level.

    ``guard`` holds the fan-out steps already on the path, so a fan-out that feeds
    itself ends the walk instead of recursing forever.
    """

    def surfaced(producer: str, guard: frozenset[str]) -> set[type[Event]]:
        # What a fan-out's stream hands back to the level that triggered it: the
        # outputs of the collect steps bound to that stream.
        inner = walk(steps[producer].return_types, guard | {producer})
        out: set[type[Event]] = set()
        for name, spec in steps.items():
            wanted = collected_types(spec)
            if not wanted or not any(
                accepts_type(t, wanted, spec.accept_event_subclasses) for t in inner
            ):
                continue
            if not spec.is_fan_out:
                out.update(event_types(spec.return_types))
            elif name not in guard:
                out |= surfaced(name, guard | {name})
        return out

    def walk(start: Iterable[Any], guard: frozenset[str]) -> set[type[Event]]:
        seen: set[type[Event]] = set()
        frontier = event_types(start)
        while frontier:
            event = frontier.pop()
            if event in seen:
                continue
            seen.add(event)
            for name, spec in steps.items():
                if spec.collection_name is not None or not accepts_type(
                    event, spec.accepted_events, spec.accept_event_subclasses
                ):
                    continue
                if not spec.is_fan_out:
                    frontier.extend(event_types(spec.return_types))
                elif name not in guard:
                    frontier.extend(surfaced(name, guard))
        return seen

    return walk(seeds, guard)


def stream_levels(steps: Mapping[str, StepSpec]) -> dict[str, set[type[Event]]]:
    """``{fan-out step: event types produced inside its stream level}``."""
    return {
        name: same_level_types(steps, spec.return_types, frozenset({name}))
        for name, spec in steps.items()
        if spec.is_fan_out
    }
