"""The step/event graph and its checks under upstream's module path
(``workflows.representation.validate``): ``build_step_graph``, ``validate_graph``."""

from __future__ import annotations

from .._step_graph import (
    GraphNode,
    GraphValidationError,
    StepGraph,
    WorkflowGraphCheck,
    build_step_graph,
    validate_graph,
)

__all__ = [
    "GraphNode",
    "GraphValidationError",
    "StepGraph",
    "WorkflowGraphCheck",
    "build_step_graph",
    "validate_graph",
]
