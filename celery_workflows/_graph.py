"""Validation of a workflow's event graph (upstream's checks, types and messages)."""

from __future__ import annotations

from collections.abc import Mapping

from ._signature import StepSpec
from .errors import WorkflowConfigurationError, WorkflowValidationError
from .events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)


def _sub(t: object, base: type | tuple[type, ...]) -> bool:
    return isinstance(t, type) and issubclass(t, base)


def start_event_class(specs: Mapping[str, StepSpec], cls_name: str) -> type[StartEvent]:
    """The one StartEvent type the steps accept."""
    found = {t for s in specs.values() for t in s.accepted_events if _sub(t, StartEvent)}
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
    found = {t for s in specs.values() for t in s.return_types if _sub(t, StopEvent)}
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


def _accepts_type(spec: StepSpec, produced: type) -> bool:
    if spec.accept_event_subclasses:
        return any(_sub(produced, t) for t in spec.accepted_events)
    return produced in spec.accepted_events


def validate_graph(
    specs: Mapping[str, StepSpec], cls_name: str, skip: frozenset[str] = frozenset()
) -> bool:
    """Check the event graph; return True if the workflow uses human-in-the-loop.

    ``skip`` names checks not to run (``Workflow(skip_graph_checks=...)``); a step's own
    ``skip_graph_checks`` exempts that step."""
    if not specs:
        raise WorkflowConfigurationError(
            f"Workflow '{cls_name}' has no configured steps. Did you forget to annotate "
            "methods with @step or to register free-function steps via @step(workflow=...)?"
        )
    start_event_class(specs, cls_name)
    stop_event_class(specs, cls_name)
    _check_catch_error(specs)
    stop_takers = [
        n for n, s in specs.items() if any(_sub(t, StopEvent) for t in s.accepted_events)
    ]
    if stop_takers:
        plural = "" if len(stop_takers) == 1 else "s"
        names = "', '".join(stop_takers)
        raise WorkflowValidationError(
            f"Step{plural} '{names}' cannot accept StopEvent. StopEvent "
            "signals the end of the workflow. Use a different Event type instead."
        )
    produced = {t for s in specs.values() for t in s.output_events}
    boundary_in = (InputRequiredEvent, HumanResponseEvent, StopEvent, StepFailedEvent, StartEvent)
    never_produced = {
        t
        for s in specs.values()
        for t in s.accepted_events
        if not _sub(t, boundary_in) and not any(_accepts_type(s, p) for p in produced)
    }
    if never_produced:
        raise WorkflowValidationError(
            "The following events are consumed but never produced: "
            + ", ".join(sorted(t.__name__ for t in never_produced))
        )
    boundary_out = (InputRequiredEvent, HumanResponseEvent, StopEvent)
    unused = {
        p
        for p in produced
        if not _sub(p, boundary_out) and not any(_accepts_type(s, p) for s in specs.values())
    }
    if unused:
        raise WorkflowValidationError(
            "The following events are produced but never consumed: "
            + ", ".join(sorted(t.__name__ for t in unused))
        )
    _check_fan_in(specs)
    if "reachability" not in skip:
        _check_reachability(specs)
    return any(_sub(p, InputRequiredEvent) for p in produced) or any(
        _sub(t, HumanResponseEvent) for s in specs.values() for t in s.accepted_events
    )


def _check_catch_error(specs: Mapping[str, StepSpec]) -> None:
    """The ``@catch_error`` handlers' scopes: known steps, not handlers, one handler each,
    at most one wildcard (upstream's rules and messages)."""
    handlers = [s for s in specs.values() if s.role == "catch_error"]
    wildcards = sorted(h.name for h in handlers if h.catch_error_for_steps is None)
    if len(wildcards) > 1:
        raise WorkflowValidationError(
            "Only one wildcard @catch_error handler is allowed per workflow, "
            f"found {len(wildcards)}: {', '.join(wildcards)}"
        )
    handler_names = {h.name for h in handlers}
    claimed: dict[str, str] = {}
    for handler in handlers:
        for name in handler.catch_error_for_steps or ():
            if name not in specs:
                raise WorkflowValidationError(
                    f"@catch_error handler '{handler.name}' lists unknown step '{name}' in "
                    "for_steps."
                )
            if name in handler_names:
                raise WorkflowValidationError(
                    f"@catch_error handler '{handler.name}' cannot cover another handler "
                    f"step '{name}'."
                )
            if name in claimed:
                raise WorkflowValidationError(
                    f"Step '{name}' is claimed by two @catch_error handlers: "
                    f"'{claimed[name]}' and '{handler.name}'."
                )
            claimed[name] = handler.name


def _downstream(specs: Mapping[str, StepSpec], seeds: set[type]) -> set[type]:
    """Event types reachable from ``seeds`` through the steps (transitively)."""
    seen = set(seeds)
    frontier = set(seeds)
    while frontier:
        takers = [s for s in specs.values() if any(_accepts_type(s, t) for t in frontier)]
        frontier = {t for s in takers for t in s.output_events} - seen
        seen |= frontier
    return seen


def _check_fan_in(specs: Mapping[str, StepSpec]) -> None:
    streamed = _downstream(
        specs, {t for s in specs.values() if s.is_fan_out for t in s.output_events}
    )
    errors = []
    for spec in specs.values():
        if spec.collection_param is None:
            continue
        missing = [
            t for t in spec.accepted_events if not any(_accepts_type(spec, p) for p in streamed)
        ]
        if missing:
            names = ", ".join(sorted(t.__name__ for t in missing))
            errors.append(
                f"Step '{spec.name}' parameter '{spec.collection_param}' collects list[{names}], "
                "but no returned-list producer creates a stream for those event types. "
                "list[E] fan-in only consumes events from steps annotated as returning "
                "list[E]; use ctx.collect_events for unstreamed ctx.send_event flows."
            )
    if errors:
        raise WorkflowValidationError("\n".join(errors))


def _check_reachability(specs: Mapping[str, StepSpec]) -> None:
    inputs = {
        t
        for s in specs.values()
        for t in s.accepted_events
        if _sub(t, (StartEvent, HumanResponseEvent))
    }
    reachable_events = _downstream(specs, inputs)
    unreachable = [
        s.name
        for s in specs.values()
        if s.role == "step"
        and "reachability" not in s.skip_graph_checks
        and not any(_accepts_type(s, t) for t in reachable_events)
    ]
    if unreachable:
        names = ", ".join(unreachable)
        raise WorkflowValidationError(
            "Graph validation failed:\n"
            f"  - [reachability] Unreachable steps: {names}\n"
            "    Steps must be reachable from StartEvent or HumanResponseEvent."
        )


def collect_events(specs: Mapping[str, StepSpec]) -> list[type[Event]]:
    """Every event type the steps accept or return."""
    found: dict[type[Event], None] = {}
    for spec in specs.values():
        for t in (*spec.accepted_events, *spec.output_events):
            found[t] = None
    return list(found)
