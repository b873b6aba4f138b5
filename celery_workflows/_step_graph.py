"""The step/event graph of a workflow and the three graph checks run on it.

Nodes are step names (``str``) and event classes (``type``): an edge event -> step means
the step accepts the event, step -> event that the step returns it. Upstream exposes the
same model as ``workflows.representation.validate`` (``StepGraph``, ``build_step_graph``,
``validate_graph``); ``celery_workflows.representation.validate`` re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._signature import StepSpec
from .events import HumanResponseEvent, InputRequiredEvent, StopEvent

#: A node of the graph: a step name or an event class.
GraphNode = str | type
#: The graph checks a workflow may skip (``Workflow(skip_graph_checks=...)``); the same
#: Literal as ``decorators.WorkflowGraphCheck``.
WorkflowGraphCheck = Literal["reachability", "terminal_event", "dead_end"]


def is_subclass(t: Any, base: type | tuple[type, ...]) -> bool:
    """``issubclass`` that is False, not TypeError, for a non-class (a typing construct
    such as ``list[str]`` can appear among a step's annotations)."""
    return isinstance(t, type) and issubclass(t, base)


def accepts_type(t: Any, accepted: Iterable[Any], allow_subclasses: bool) -> bool:
    """Whether an event of class ``t`` is routed to a step accepting ``accepted``."""
    if allow_subclasses:
        return any(is_subclass(t, a) for a in accepted if isinstance(a, type))
    return t in tuple(accepted)


@dataclass
class StepGraph:
    """Adjacency lists of a workflow's steps and events, with what is reachable."""

    outgoing: dict[GraphNode, list[GraphNode]] = field(default_factory=dict)
    """node -> successors (event -> accepting steps, step -> returned events)."""
    event_types: set[type] = field(default_factory=set)
    """Every event class in the graph."""
    step_names: set[str] = field(default_factory=set)
    """Every step in the graph."""
    forward_reachable: set[GraphNode] = field(default_factory=set)
    """Nodes reachable from the inputs (the StartEvent class, HumanResponseEvent
    subclasses, the ``@catch_error`` handlers)."""
    reverse_reachable: set[GraphNode] = field(default_factory=set)
    """Nodes from which an output (StopEvent, InputRequiredEvent) is reachable."""


def _walk(
    seeds: Iterable[GraphNode], adjacency: Mapping[GraphNode, list[GraphNode]]
) -> set[GraphNode]:
    seen: set[GraphNode] = set()
    stack = list(seeds)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(adjacency.get(node, ()))
    return seen


def build_step_graph(
    steps: Mapping[str, StepSpec],
    start_event_class: type,
    catch_error_steps: list[str] | None = None,
) -> StepGraph:
    """The graph of ``steps`` (``{name: step config}``), reachability computed.

    ``catch_error_steps`` name the ``@catch_error`` handlers: the runtime routes a failed
    step's StepFailedEvent to them, so they and what they return count as reachable.
    """
    outgoing: dict[GraphNode, list[GraphNode]] = {}
    events: set[type] = {start_event_class} if steps else set()
    for name, spec in steps.items():
        for returned in spec.return_types:
            if returned is not type(None):
                events.add(returned)
                outgoing.setdefault(name, []).append(returned)
        events.update(spec.accepted_events)
    for event in events:
        for name, spec in steps.items():
            # A StopEvent ends the run instead of being routed, so a step accepting a
            # broad base class (``Event``) does not take it.
            subclasses = spec.accept_event_subclasses and not is_subclass(event, StopEvent)
            if accepts_type(event, spec.accepted_events, subclasses):
                outgoing.setdefault(event, []).append(name)
    seeds: list[GraphNode] = [start_event_class]
    seeds += [e for e in events if is_subclass(e, HumanResponseEvent)]
    seeds += list(catch_error_steps or ())
    incoming: dict[GraphNode, list[GraphNode]] = {}
    for source, targets in outgoing.items():
        for target in targets:
            incoming.setdefault(target, []).append(source)
    outputs = [e for e in events if is_subclass(e, (StopEvent, InputRequiredEvent))]
    return StepGraph(
        outgoing=outgoing,
        event_types=events,
        step_names=set(steps),
        forward_reachable=_walk(seeds, outgoing),
        reverse_reachable=_walk(outputs, incoming),
    )


@dataclass
class GraphValidationError:
    """One failed graph check: which check, what failed, how to fix it, which steps."""

    check: WorkflowGraphCheck
    message: str
    hint: str
    step_names: list[str] = field(default_factory=list)


def _exempt(steps: Mapping[str, StepSpec], check: str) -> set[str]:
    return {name for name, spec in steps.items() if check in spec.skip_graph_checks}


def validate_graph(
    steps: Mapping[str, StepSpec],
    start_event_class: type,
    skip_checks: set[str] | frozenset[str] | None = None,
    catch_error_steps: list[str] | None = None,
) -> list[GraphValidationError]:
    """Run the reachability, terminal-event and dead-end checks; every failure is listed
    (an empty list: the graph is sound). ``skip_checks`` names checks not to run."""
    skip = skip_checks or set()
    graph = build_step_graph(steps, start_event_class, catch_error_steps)
    errors: list[GraphValidationError] = []
    if "reachability" not in skip:
        candidates = graph.step_names - _exempt(steps, "reachability")
        unreachable = sorted(n for n in candidates if n not in graph.forward_reachable)
        if unreachable:
            errors.append(
                GraphValidationError(
                    "reachability",
                    f"Unreachable steps: {', '.join(unreachable)}",
                    "Steps must be reachable from StartEvent or HumanResponseEvent.",
                    unreachable,
                )
            )
    if "terminal_event" not in skip:
        dangling = sorted(
            e.__name__
            for e in graph.event_types
            if not any(t in graph.step_names for t in graph.outgoing.get(e, ()))
            and not is_subclass(e, (StopEvent, InputRequiredEvent))
        )
        if dangling:
            errors.append(
                GraphValidationError(
                    "terminal_event",
                    f"Events produced but never consumed: {', '.join(dangling)}",
                    "Only StopEvent and InputRequiredEvent may be terminal.",
                )
            )
    if "dead_end" not in skip:
        producers = {
            n
            for n in graph.step_names
            if any(isinstance(t, type) for t in graph.outgoing.get(n, ()))
        }
        candidates = producers - _exempt(steps, "dead_end")
        dead = sorted(n for n in candidates if n not in graph.reverse_reachable)
        if dead:
            errors.append(
                GraphValidationError(
                    "dead_end",
                    f"Dead-end steps: {', '.join(dead)}",
                    "Steps must have a path to StopEvent or InputRequiredEvent.",
                    dead,
                )
            )
    return errors


def format_graph_errors(errors: list[GraphValidationError]) -> str:
    """The message of the WorkflowValidationError that reports ``errors`` together."""
    detail = "\n".join(f"  - [{e.check}] {e.message}\n    {e.hint}" for e in errors)
    return f"Graph validation failed:\n{detail}"


__all__ = [
    "GraphNode",
    "GraphValidationError",
    "StepGraph",
    "WorkflowGraphCheck",
    "accepts_type",
    "build_step_graph",
    "format_graph_errors",
    "is_subclass",
    "validate_graph",
]
