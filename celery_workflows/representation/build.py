"""``get_workflow_representation``: a workflow's steps, events and resources as a graph.

The graph is read from the step specs alone (no run, no runtime): a node per step, per
event class a step accepts or returns, per resource and resource config, and one
``external_step`` node when a step asks for human input. Ids, labels and edges follow
upstream's, so a visualizer built for upstream draws the same picture.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .._signature import StepSpec
from .._step_graph import is_subclass
from ..events import Event, HumanResponseEvent, InputRequiredEvent, StopEvent
from ..resource import ResourceDescriptor, _read_config_section, _Resource, _ResourceConfig
from ..workflow import Workflow
from .types import (
    WorkflowEventNode,
    WorkflowExternalNode,
    WorkflowGraph,
    WorkflowGraphEdge,
    WorkflowGraphNode,
    WorkflowResourceConfigNode,
    WorkflowResourceNode,
    WorkflowStepNode,
)

EXTERNAL = "external_step"


def _type_name(t: Any) -> str | None:
    if t is None:
        return None
    return str(getattr(t, "__name__", t))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _type_chain(cls: Any) -> list[str]:
    """The class name, then its Event base classes up to (not including) Event."""
    if not is_subclass(cls, Event):
        name = _type_name(cls)
        return [name] if name else []
    chain = [cls.__name__]
    for base in cls.mro()[1:]:
        if base is Event:
            break
        if is_subclass(base, Event):
            chain.append(base.__name__)
    return chain


def _event_node(t: Any, produced_by: dict[str, list[str]]) -> WorkflowEventNode:
    name = _type_name(t) or "UnknownType"
    schema = t.model_json_schema() if is_subclass(t, BaseModel) else None
    return WorkflowEventNode(
        id=name,
        label=name,
        event_type=name,
        event_types=_type_chain(t),
        event_schema=schema,
        produced_by=list(produced_by.get(name, [])),
    )


def _steps_of(cls: type[Workflow]) -> dict[str, Callable[..., Any]]:
    """The steps in upstream's order: methods by name, then free functions as added."""
    steps = cls._class_steps()
    free = {n: f for n, f in steps.items() if n in cls._step_functions}
    methods = {n: steps[n] for n in sorted(steps) if n not in free}
    return {**methods, **free}


class _Resources:
    """Resource and config nodes, one per factory or per file section, with the edges of
    their dependencies."""

    def __init__(self, nodes: list[WorkflowGraphNode], edges: list[WorkflowGraphEdge]) -> None:
        self.nodes, self.edges = nodes, edges
        self.by_identity: dict[Any, WorkflowResourceNode | WorkflowResourceConfigNode] = {}
        self.edge_keys: set[tuple[str, str, str | None]] = set()

    @staticmethod
    def identity(descriptor: ResourceDescriptor) -> Any:
        if isinstance(descriptor, _Resource):
            return ("factory", id(descriptor._factory))
        if isinstance(descriptor, _ResourceConfig):
            return ("config", descriptor.config_file, descriptor.path_selector or "")
        return ("other", id(descriptor))

    def node(self, descriptor: ResourceDescriptor, type_annotation: Any) -> Any:
        """The node of ``descriptor``, made (with its dependencies) on first sight."""
        key = self.identity(descriptor)
        if key in self.by_identity:
            return self.by_identity[key]
        if isinstance(descriptor, _ResourceConfig):
            made: Any = self._config_node(descriptor, type_annotation)
        elif isinstance(descriptor, _Resource):
            made = self._factory_node(descriptor, type_annotation)
        else:
            raise TypeError(f"Unsupported resource descriptor type: {type(descriptor).__name__}")
        self.nodes.append(made)
        self.by_identity[key] = made
        for dep_name, dep, dep_type in descriptor.get_dependencies():
            target = self.node(dep, dep_type)
            if (made.id, target.id, dep_name) not in self.edge_keys:
                self.edge_keys.add((made.id, target.id, dep_name))
                self.edges.append(
                    WorkflowGraphEdge(source=made.id, target=target.id, label=dep_name)
                )
        return made

    @staticmethod
    def _factory_node(resource: _Resource[Any], type_annotation: Any) -> WorkflowResourceNode:
        factory: Any = resource._factory
        source_file, source_line = inspect.getfile(factory), inspect.getsourcelines(factory)[1]
        node_id = f"resource_{_short_hash(f'{resource.name}:{source_file}')}"
        type_name = _type_name(type_annotation)
        return WorkflowResourceNode(
            id=node_id,
            label=type_name or resource.name or node_id,
            type_name=type_name,
            getter_name=resource.name,
            source_file=source_file,
            source_line=source_line,
            description=inspect.getdoc(factory),
        )

    @staticmethod
    def _config_node(
        config: _ResourceConfig[Any], type_annotation: Any
    ) -> WorkflowResourceConfigNode:
        selector = config.path_selector
        type_name = _type_name(type_annotation)
        schema = (
            type_annotation.model_json_schema() if is_subclass(type_annotation, BaseModel) else None
        )
        digest = _short_hash(f"{config.config_file}:{selector or ''}")
        return WorkflowResourceConfigNode(
            id=f"resource_config_{digest}",
            label=config.label or type_name or config.config_file,
            type_name=type_name,
            config_file=config.config_file,
            path_selector=selector,
            config_schema=schema,
            config_value=_read_config_section(config.config_file, selector),
            description=config.description,
        )


def _nodes(
    steps: dict[str, Callable[..., Any]], specs: dict[str, StepSpec], resources: _Resources
) -> set[Any]:
    """First pass: step, event, external and resource nodes. Returns the event classes."""
    produced_by: dict[str, list[str]] = {}
    for name, spec in specs.items():
        for t in spec.return_types:
            type_name = _type_name(t) if t is not type(None) else None
            if type_name and name not in produced_by.setdefault(type_name, []):
                produced_by[type_name].append(name)
    stop = next(
        (t for s in specs.values() for t in s.return_types if is_subclass(t, StopEvent)), None
    )
    seen: set[str] = set()
    events: set[Any] = set()
    nodes = resources.nodes
    for name, spec in specs.items():
        if name not in seen:
            seen.add(name)
            nodes.append(
                WorkflowStepNode(id=name, label=name, description=inspect.getdoc(steps[name]))
            )
        accepted = [t for t in spec.accepted_events if not (t is StopEvent and t is not stop)]
        returned = [t for t in spec.return_types if t is not type(None)]
        for t in [*accepted, *returned]:
            events.add(t)
            if (_type_name(t) or "UnknownType") not in seen:
                seen.add(_type_name(t) or "UnknownType")
                nodes.append(_event_node(t, produced_by))
            if t in returned and is_subclass(t, InputRequiredEvent) and EXTERNAL not in seen:
                seen.add(EXTERNAL)
                nodes.append(WorkflowExternalNode(id=EXTERNAL, label=EXTERNAL))
        for definition in spec.resources:
            resources.node(definition.resource, definition.type_annotation)
    return events


def _sources(spec: StepSpec, events: set[Any]) -> list[Any]:
    """The event classes drawn into a step: with subclass routing, every subclass of an
    accepted class in the graph (a StopEvent never: it ends the run)."""
    found: list[Any] = []
    for accepted in spec.accepted_events:
        if spec.accept_event_subclasses and isinstance(accepted, type):
            candidates = [
                e
                for e in events
                if is_subclass(e, accepted) and (e is accepted or not is_subclass(e, StopEvent))
            ]
        else:
            candidates = [accepted]
        found.extend(e for e in candidates if e not in found)
    return found


def get_workflow_representation(workflow: Workflow | type[Workflow]) -> WorkflowGraph:
    """The structure of a workflow (instance or class) as a :class:`WorkflowGraph`:
    nodes for steps, events, resources and the outside world, edges for the flow."""
    cls = workflow if isinstance(workflow, type) else type(workflow)
    steps = _steps_of(cls)
    specs: dict[str, StepSpec] = {n: f._step_config for n, f in steps.items()}  # type: ignore[attr-defined]
    nodes: list[WorkflowGraphNode] = []
    edges: list[WorkflowGraphEdge] = []
    resources = _Resources(nodes, edges)
    events = _nodes(steps, specs, resources)
    has_external = any(n.id == EXTERNAL for n in nodes)
    for name, spec in specs.items():
        for t in spec.return_types:
            if t is not type(None):
                edges.append(WorkflowGraphEdge(source=name, target=_type_name(t) or "UnknownType"))
            if is_subclass(t, InputRequiredEvent):
                edges.append(
                    WorkflowGraphEdge(source=_type_name(t) or "UnknownType", target=EXTERNAL)
                )
        for e in _sources(spec, events):
            edges.append(WorkflowGraphEdge(source=_type_name(e) or "UnknownType", target=name))
            if is_subclass(e, HumanResponseEvent) and has_external:
                edges.append(
                    WorkflowGraphEdge(source=EXTERNAL, target=_type_name(e) or "UnknownType")
                )
        for definition in spec.resources:
            target = resources.by_identity[resources.identity(definition.resource)]
            edges.append(WorkflowGraphEdge(source=name, target=target.id, label=definition.name))
    return WorkflowGraph(
        name=cls.__name__, nodes=nodes, edges=edges, description=inspect.getdoc(cls)
    )


__all__ = ["get_workflow_representation"]
