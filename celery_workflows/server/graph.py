"""``GET /workflows/{name}/representation``: the workflow as steps, events and edges, in
the node and edge shapes of upstream's ``WorkflowGraph``."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..events import Event
from .envelopes import type_chain

if TYPE_CHECKING:
    from ..workflow import Workflow

__all__ = ["workflow_graph"]


def _event_node(cls: type[Event], produced_by: list[str]) -> dict[str, Any]:
    name = cls.__name__
    try:
        schema: dict[str, Any] | None = cls.model_json_schema()
    except Exception:  # a field type pydantic cannot describe: the node goes without
        schema = None
    return {
        "id": name,
        "label": name,
        "node_type": "event",
        "event_type": name,
        "event_types": [name, *(type_chain(cls) or [])],
        "event_schema": schema,
        "produced_by": produced_by,
    }


def workflow_graph(workflow: Workflow) -> dict[str, Any]:
    """Steps and the events they take and return (resources are not drawn)."""
    specs = workflow._step_specs()
    functions = workflow._step_functions_by_name()
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    events: dict[str, type[Event]] = {}
    produced: dict[str, list[str]] = {}
    for name, spec in specs.items():
        doc = inspect.getdoc(functions[name]) if name in functions else None
        nodes.append({"id": name, "label": name, "node_type": "step", "description": doc})
        for cls in spec.accepted_events:
            events.setdefault(cls.__name__, cls)
            edges.append({"source": cls.__name__, "target": name, "label": None})
        for cls in spec.output_events:
            events.setdefault(cls.__name__, cls)
            produced.setdefault(cls.__name__, []).append(name)
            edges.append({"source": name, "target": cls.__name__, "label": None})
    nodes.extend(_event_node(cls, produced.get(key, [])) for key, cls in events.items())
    doc = inspect.getdoc(type(workflow))
    return {
        "name": type(workflow).__name__,
        "nodes": nodes,
        "edges": edges,
        "description": doc,
    }
