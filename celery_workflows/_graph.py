"""Validation of a workflow's structure: upstream's checks, order, types and messages.

The checks run in upstream's order so that the first error a user sees is the same:
missing steps, the start and stop events, ``list[E]`` fan-ins and joins, the flow of
events, the ``@catch_error`` handlers, and last the graph checks of ``_step_graph``
(reachability, terminal events, dead ends), whose failures are reported together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._signature import StepSpec
from ._step_graph import accepts_type, format_graph_errors, is_subclass, validate_graph
from ._stream_levels import collected_types, same_level_types, stream_levels
from .errors import WorkflowConfigurationError, WorkflowValidationError
from .events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)


def start_event_class(specs: Mapping[str, StepSpec], cls_name: str) -> type[StartEvent]:
    """The one StartEvent type the steps accept."""
    found = {t for s in specs.values() for t in s.accepted_events if is_subclass(t, StartEvent)}
    if not found:
        raise WorkflowConfigurationError(
            "At least one Event of type StartEvent must be received by any step. "
            f"(Workflow '{cls_name}' has no @step that accepts StartEvent.)"
        )
    if len(found) > 1:
        raise WorkflowConfigurationError(
            f"Only one type of StartEvent is allowed per workflow, found {len(found)}: "
            f"{found} in workflow '{cls_name}'."
        )
    return found.pop()  # type: ignore[return-value]


def stop_event_class(specs: Mapping[str, StepSpec], cls_name: str) -> type[StopEvent]:
    """The one StopEvent type the steps return."""
    found = {t for s in specs.values() for t in s.return_types if is_subclass(t, StopEvent)}
    if not found:
        raise WorkflowConfigurationError(
            "At least one Event of type StopEvent must be returned by any step. "
            f"(Workflow '{cls_name}' has no @step that returns StopEvent.)"
        )
    if len(found) > 1:
        raise WorkflowConfigurationError(
            f"Only one type of StopEvent is allowed per workflow, found {len(found)}: "
            f"{found} in workflow '{cls_name}'."
        )
    stop: type[StopEvent] = found.pop()
    return stop


@dataclass(frozen=True)
class Validated:
    """What validation found: the start and stop event classes, and whether the workflow
    uses human-in-the-loop events."""

    start_event_class: type[StartEvent]
    stop_event_class: type[StopEvent]
    uses_hitl: bool


def validate_workflow(
    specs: Mapping[str, StepSpec], cls_name: str, skip: frozenset[str] = frozenset()
) -> Validated:
    """Run every structural check, or raise the first family's error.

    ``skip`` names graph checks not to run (``Workflow(skip_graph_checks=...)``); a
    step's own ``skip_graph_checks`` exempts that step.
    """
    if not specs:
        raise WorkflowConfigurationError(
            f"Workflow '{cls_name}' has no configured steps. Did you forget to annotate "
            "methods with @step or to register free-function steps via @step(workflow=...)?"
        )
    start = start_event_class(specs, cls_name)
    stop = stop_event_class(specs, cls_name)
    _check_fan_in(specs)
    _check_join_levels(specs, start)
    uses_hitl = _check_event_flow(specs, start)
    handlers = check_catch_error(specs)
    errors = validate_graph(specs, start, skip_checks=skip, catch_error_steps=handlers)
    if errors:
        raise WorkflowValidationError(format_graph_errors(errors))
    return Validated(start, stop, uses_hitl)


def _check_event_flow(specs: Mapping[str, StepSpec], start: type[StartEvent]) -> bool:
    """No step takes StopEvent; every accepted event is produced and every produced
    event accepted (boundary events excepted). True if human-in-the-loop is used."""
    stop_takers = [
        n for n, s in specs.items() if any(is_subclass(t, StopEvent) for t in s.accepted_events)
    ]
    if stop_takers:
        plural = "" if len(stop_takers) == 1 else "s"
        names = "', '".join(stop_takers)
        raise WorkflowValidationError(
            f"Step{plural} '{names}' cannot accept StopEvent. StopEvent "
            "signals the end of the workflow. Use a different Event type instead."
        )
    produced: set[Any] = {start}
    produced.update(t for s in specs.values() for t in s.return_types if t is not type(None))
    boundary_in = (InputRequiredEvent, HumanResponseEvent, StopEvent, StepFailedEvent)
    never_produced = {
        t
        for s in specs.values()
        for t in s.accepted_events
        if not is_subclass(t, boundary_in)
        and not any(accepts_type(p, (t,), s.accept_event_subclasses) for p in produced)
    }
    if never_produced:
        # Sorted, where upstream lists a set in no stable order.
        raise WorkflowValidationError(
            "The following events are consumed but never produced: "
            + ", ".join(sorted(t.__name__ for t in never_produced))
        )
    boundary_out = (InputRequiredEvent, HumanResponseEvent, StopEvent)
    unused = {
        p
        for p in produced
        if not is_subclass(p, boundary_out)
        and not any(
            accepts_type(p, s.accepted_events, s.accept_event_subclasses) for s in specs.values()
        )
    }
    if unused:
        raise WorkflowValidationError(
            "The following events are produced but never consumed: "
            + ", ".join(sorted(getattr(t, "__name__", str(t)) for t in unused))
        )
    return any(is_subclass(p, InputRequiredEvent) for p in produced) or any(
        is_subclass(t, HumanResponseEvent) for s in specs.values() for t in s.accepted_events
    )


def _check_fan_in(specs: Mapping[str, StepSpec]) -> None:
    """A ``list[E]`` parameter must collect a stream that some ``list[E]`` return opens."""
    produced_in_streams = {t for level in stream_levels(specs).values() for t in level}
    errors = []
    for spec in specs.values():
        if spec.collection_name is None:
            continue
        missing = [
            t
            for t in collected_types(spec)
            if not any(
                accepts_type(p, (t,), spec.accept_event_subclasses) for p in produced_in_streams
            )
        ]
        if missing:
            names = ", ".join(sorted(t.__name__ for t in missing))
            errors.append(
                f"Step '{spec.name}' parameter '{spec.collection_name}' collects list[{names}], "
                "but no returned-list producer creates a stream for those event types. "
                "list[E] fan-in only consumes events from steps annotated as returning "
                "list[E]; use ctx.collect_events for unstreamed ctx.send_event flows."
            )
    if errors:
        raise WorkflowValidationError("\n".join(errors))


def _check_join_levels(specs: Mapping[str, StepSpec], start: type[StartEvent]) -> None:
    """A multi-parameter join fires only when all its slots fill at one stream level
    (the top level, or one fan-out's stream): a join across levels would wait forever."""
    joins = {name: spec.event_params for name, spec in specs.items() if spec.is_join}
    if not joins:
        return
    human = [
        t for s in specs.values() for t in s.accepted_events if is_subclass(t, HumanResponseEvent)
    ]
    levels = {"the top level": same_level_types(specs, [start, *human], frozenset())}
    for producer, types in stream_levels(specs).items():
        levels[f"the stream of step '{producer}'"] = types
    errors = []
    for name, slots in joins.items():
        wanted = {t for _, types in slots for t in types}
        if any(wanted <= found for found in levels.values()):
            continue
        where = "; ".join(
            f"'{param}' ({' | '.join(t.__name__ for t in types)}) is produced at "
            + (
                ", ".join(sorted(lv for lv, found in levels.items() if set(types) & found))
                or "no level"
            )
            for param, types in slots
        )
        errors.append(
            f"Step '{name}' joins event parameters that are never produced at a common "
            f"stream level: {where}. A multi-slot join only fires when all of its inputs "
            "originate at the same level. To gate in-stream work on input from another "
            "level, use ctx.wait_for_event inside the producing step instead."
        )
    if errors:
        raise WorkflowValidationError("\n".join(errors))


def check_catch_error(specs: Mapping[str, StepSpec]) -> list[str]:
    """The ``@catch_error`` handlers' budgets and scopes: known steps, not handlers, one
    handler each, at most one wildcard. Every scope error is reported together, as
    upstream does. Returns the handlers' names."""
    handlers = [s for s in specs.values() if s.role == "catch_error"]
    for handler in handlers:
        budget = handler.catch_error_max_recoveries
        if not isinstance(budget, int) or budget < 1:
            raise WorkflowValidationError(
                f"@catch_error handler '{handler.name}' has max_recoveries={budget!r}; "
                "must be an integer >= 1."
            )
    errors = []
    wildcards = sorted(h.name for h in handlers if h.catch_error_for_steps is None)
    if len(wildcards) > 1:
        errors.append(
            "Only one wildcard @catch_error handler is allowed per workflow, "
            f"found {len(wildcards)}: {', '.join(wildcards)}"
        )
    handler_names = {h.name for h in handlers}
    claimed: dict[str, str] = {}
    for handler in handlers:
        for name in handler.catch_error_for_steps or ():
            if name not in specs:
                errors.append(
                    f"@catch_error handler '{handler.name}' lists unknown step '{name}' in "
                    "for_steps."
                )
            elif name in handler_names:
                errors.append(
                    f"@catch_error handler '{handler.name}' cannot cover another handler "
                    f"step '{name}'."
                )
            elif name in claimed:
                errors.append(
                    f"Step '{name}' is claimed by two @catch_error handlers: "
                    f"'{claimed[name]}' and '{handler.name}'."
                )
            else:
                claimed[name] = handler.name
    if errors:
        raise WorkflowValidationError("\n".join(errors))
    return [h.name for h in handlers]


def collect_events(specs: Mapping[str, StepSpec]) -> list[type[Event]]:
    """Every event type the steps accept or return."""
    found: dict[type[Event], None] = {}
    for spec in specs.values():
        for t in (*spec.accepted_events, *spec.output_events):
            found[t] = None
    return list(found)
