"""The graph model of a workflow's structure (upstream's ``workflows.representation.types``).

Nodes are steps, events, the external world (human in the loop), resources and resource
configs; an edge is a directed ``source -> target`` between node ids. The models are
plain pydantic, so a graph serializes to JSON for a visualizer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class WorkflowNodeBase(BaseModel):
    """What every node has: an id unique in its graph and a label to display."""

    id: str = Field(description="Unique identifier for the node")
    label: str = Field(description="Display text for the node")

    def truncated_label(self, max_length: int) -> str:
        """The label cut to ``max_length`` characters, the last one ``*`` when cut."""
        if len(self.label) <= max_length:
            return self.label
        return self.label[: max_length - 1] + "*"


class WorkflowStepNode(WorkflowNodeBase):
    """A ``@step`` of the workflow."""

    node_type: Literal["step"] = Field(default="step", description="Node kind")
    description: str | None = Field(default=None, description="The step's docstring")


class WorkflowEventNode(WorkflowNodeBase):
    """An event class that flows between steps."""

    node_type: Literal["event"] = Field(default="event", description="Node kind")
    event_type: str = Field(description="The event class name")
    event_types: list[str] = Field(
        description="The class name, then its Event base classes (most derived first)"
    )
    event_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema of the event class"
    )
    produced_by: list[str] = Field(
        default_factory=list, description="Steps whose return annotation emits this event"
    )

    def is_subclass_of(self, *type_names: str) -> bool:
        """Whether the event class is, or derives from, a class of one of these names."""
        return any(name in self.event_types for name in type_names)


class WorkflowExternalNode(WorkflowNodeBase):
    """The world outside the run: a human or system answering an InputRequiredEvent."""

    node_type: Literal["external"] = Field(default="external", description="Node kind")


class WorkflowResourceNode(WorkflowNodeBase):
    """A resource injected into steps (``Annotated[T, Resource(factory)]``)."""

    node_type: Literal["resource"] = Field(default="resource", description="Node kind")
    type_name: str | None = Field(default=None, description="Name of the annotated type")
    getter_name: str | None = Field(default=None, description="Name of the factory")
    source_file: str | None = Field(default=None, description="File defining the factory")
    source_line: int | None = Field(default=None, description="Line of the factory")
    description: str | None = Field(default=None, description="The factory's docstring")


class WorkflowResourceConfigNode(WorkflowNodeBase):
    """A configuration model loaded from a JSON file (``ResourceConfig``)."""

    node_type: Literal["resource_config"] = Field(
        default="resource_config", description="Node kind"
    )
    type_name: str | None = Field(default=None, description="The model class it loads")
    config_file: str | None = Field(default=None, description="Path of the JSON file")
    path_selector: str | None = Field(
        default=None, description="Dotted keys to the section it loads"
    )
    config_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema of the model class"
    )
    config_value: dict[str, Any] | None = Field(
        default=None, description="The section read from the file"
    )
    description: str | None = Field(default=None, description="What the config holds")


class WorkflowGenericNode(WorkflowNodeBase):
    """Any other kind of node (agents, tools, ...), named by its ``node_type``."""

    node_type: str = Field(description="Custom node kind")
    event_type: str | None = Field(default=None, description="Optional type name")
    event_types: list[str] | None = Field(
        default=None, description="Optional type name, then its base classes"
    )

    def is_subclass_of(self, *type_names: str) -> bool:
        """Whether ``event_types`` names one of these (False when it is not set)."""
        return bool(self.event_types) and any(n in (self.event_types or ()) for n in type_names)


#: Any node. Pydantic tries the members in order: the generic node last, as a catch-all.
WorkflowGraphNode = (
    WorkflowStepNode
    | WorkflowEventNode
    | WorkflowExternalNode
    | WorkflowResourceNode
    | WorkflowResourceConfigNode
    | WorkflowGenericNode
)


class WorkflowGraphEdge(BaseModel):
    """A directed edge between two node ids (resource edges carry the parameter name)."""

    source: str = Field(description="Id of the node the edge leaves")
    target: str = Field(description="Id of the node the edge enters")
    label: str | None = Field(default=None, description="Optional edge label")


class WorkflowGraph(BaseModel):
    """A workflow's structure: its name, nodes, edges and docstring."""

    name: str = Field(description="Name of the workflow class")
    nodes: list[WorkflowGraphNode] = Field(description="Every node of the graph")
    edges: list[WorkflowGraphEdge] = Field(description="Every edge of the graph")
    description: str | None = Field(default=None, description="The workflow's docstring")

    def filter_by_node_type(self, *node_types: str) -> WorkflowGraph:
        """A graph without the nodes of these kinds; an edge path through removed nodes
        becomes one edge (``a -> removed -> b`` gives ``a -> b``), labelled with the
        first removed node's label, or the direct edge's own label."""
        removed = {n.id for n in self.nodes if n.node_type in node_types}
        kept = [n for n in self.nodes if n.id not in removed]
        kept_ids = {n.id for n in kept}
        labels = {n.id: n.label for n in self.nodes}
        leaving: dict[str, list[WorkflowGraphEdge]] = {}
        for edge in self.edges:
            leaving.setdefault(edge.source, []).append(edge)

        def targets(node: str, label: str | None, seen: set[str]) -> list[tuple[str, str | None]]:
            found: list[tuple[str, str | None]] = []
            for edge in leaving.get(node, ()):
                if edge.target in seen:
                    continue
                if edge.target in kept_ids:
                    found.append((edge.target, label if label is not None else edge.label))
                elif edge.target in removed:
                    seen.add(edge.target)
                    via = label if label is not None else labels[edge.target]
                    found.extend(targets(edge.target, via, seen))
            return found

        edges: list[WorkflowGraphEdge] = []
        pairs: set[tuple[str, str]] = set()
        # Upstream walks the kept ids as a set; so does this, and edge order follows.
        for source in kept_ids:
            for target, label in targets(source, None, set()):
                if (source, target) not in pairs:
                    pairs.add((source, target))
                    edges.append(WorkflowGraphEdge(source=source, target=target, label=label))
        return WorkflowGraph(name=self.name, nodes=kept, edges=edges, description=self.description)


__all__ = [
    "WorkflowEventNode",
    "WorkflowExternalNode",
    "WorkflowGenericNode",
    "WorkflowGraph",
    "WorkflowGraphEdge",
    "WorkflowGraphNode",
    "WorkflowNodeBase",
    "WorkflowResourceConfigNode",
    "WorkflowResourceNode",
    "WorkflowStepNode",
]
