"""Names upstream code imports exist here under the same module paths.

Each entry lists names of an upstream module that code written for upstream touches; the
test checks upstream has them (so the list stays true) and that celery_workflows does.
"""

from __future__ import annotations

import importlib

import pytest

NAMES = {
    "representation": [
        "WorkflowNodeBase",
        "WorkflowStepNode",
        "WorkflowEventNode",
        "WorkflowExternalNode",
        "WorkflowResourceNode",
        "WorkflowResourceConfigNode",
        "WorkflowGenericNode",
        "WorkflowGraphNode",
        "WorkflowGraphEdge",
        "WorkflowGraph",
        "get_workflow_representation",
    ],
    "representation.validate": [
        "StepGraph",
        "GraphValidationError",
        "build_step_graph",
        "validate_graph",
    ],
    "context.external_context": ["ExternalContext"],
    "context.internal_context": ["InternalContext"],
    "context.pre_context": ["PreContext"],
    "context.state_store": [
        "MAX_DEPTH",
        "KNOWN_UNSERIALIZABLE_KEYS",
        "DictState",
        "InMemoryStateStore",
        "StateStore",
        "InMemorySerializedState",
        "UnserializableKeyWarning",
        "get_by_path",
        "set_by_path",
        "set_by_path_copy",
        "traverse_path_step",
        "assign_path_step",
        "is_declared_model_path_segment",
        "merge_state",
        "create_cleared_state",
        "copy_state_for_edit",
        "serialize_dict_state_data",
        "deserialize_dict_state_data",
        "encode_state",
        "decode_state",
        "create_in_memory_payload",
        "parse_in_memory_state",
        "deserialize_state_from_dict",
        "decode_seed_state",
        "infer_state_type",
        "is_durable_serialized_state",
    ],
    "context.context_types": [
        "CURRENT_SERIALIZED_VERSION",
        "SerializedContext",
        "SerializedContextV0",
        "SerializedEventAttempt",
        "SerializedInProgressAttempt",
        "SerializedWaiter",
        "SerializedStepWorkerState",
        "SerializedDelivery",
        "SerializedCollectionStreamInstance",
        "SerializedCollectionReleaseState",
        "SerializedCollectionReleasePayload",
    ],
    "decorators": [
        "StepConfig",
        "StepFunction",
        "CatchErrorHandler",
        "WorkflowGraphCheck",
        "StepGraphCheck",
        "step",
        "catch_error",
    ],
    "workflow": ["Workflow", "WorkflowMeta"],
    "types": ["RunResultT", "StopEventT"],
}


@pytest.mark.parametrize("module", sorted(NAMES))
@pytest.mark.parametrize(
    "pkg", [pytest.param("workflows", marks=pytest.mark.upstream), "celery_workflows"]
)
def test_upstream_names_exist(pkg: str, module: str) -> None:
    found = importlib.import_module(f"{pkg}.{module}")
    assert [n for n in NAMES[module] if not hasattr(found, n)] == []
