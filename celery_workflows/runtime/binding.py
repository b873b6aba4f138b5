"""A workflow as the engine sees it: its steps, router, codec and state type."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from .._signature import StepSpec
from ..errors import WorkflowRuntimeError
from ..events import Event
from .codec import Codec, JsonCodec, LiveCodec, event_type_name
from .routing import Router
from .streams import bound_collectors

if TYPE_CHECKING:
    from ..workflow import Workflow


@dataclass
class Binding:
    """Everything per workflow that the engine computes once, not per message."""

    workflow: Workflow
    name: str
    specs: dict[str, StepSpec]
    functions: dict[str, Callable[..., Any]]
    codec: Codec
    router: Router
    state_type: type[BaseModel]
    #: Digest of the workflow's shape (steps, the events they take and emit, the state
    #: type), stored on every run it starts: an operator sees which shape started a run
    #: (``celery-workflows runs show``), e.g. across a rolling upgrade.
    code_version: str = ""
    #: ``{fan-out step: the collecting steps bound to its streams}``.
    collectors: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def check_target(self, step: str, event: Event) -> None:
        """Raise WorkflowRuntimeError unless ``step`` exists and accepts ``event``."""
        spec = self.specs.get(step)
        if spec is None:
            raise WorkflowRuntimeError(f"Step {step} does not exist")
        if not spec.accepts(event):
            raise WorkflowRuntimeError(f"Step {step} does not accept event of type {type(event)}")
        if spec.is_collect:
            # As upstream: a collecting step takes only members of a fan-out stream.
            raise WorkflowRuntimeError(
                f"{type(event).__name__} was sent to collect step {step!r} via "
                "send_event(step=...), but a collect step cannot receive targeted events: "
                "it only collects events emitted inside a fan-out stream."
            )

    def error_handler(self, failed_step: str) -> StepSpec | None:
        """The ``@catch_error`` handler that covers ``failed_step``, if any."""
        handlers = [s for s in self.specs.values() if s.role == "catch_error"]
        if failed_step in {h.name for h in handlers}:
            return None  # a failing handler fails the run
        scoped = [
            h
            for h in handlers
            if h.catch_error_for_steps and failed_step in h.catch_error_for_steps
        ]
        if scoped:
            return scoped[0]
        wildcard = [h for h in handlers if h.catch_error_for_steps is None]
        return wildcard[0] if wildcard else None


def bind(
    workflow: Workflow,
    *,
    payloads: Literal["json", "live"],
    max_event_bytes: int | None = None,
) -> Binding:
    """Compute the binding of ``workflow`` for a store that keeps JSON or live payloads."""
    specs = workflow._step_specs()
    state_type = workflow._state_type()
    codec: Codec
    if payloads == "json":
        codec = JsonCodec(workflow._type_registry(), state_type, max_event_bytes)
    else:
        codec = LiveCodec()
    return Binding(
        workflow=workflow,
        name=workflow.workflow_name,
        specs=specs,
        functions=workflow._step_functions_by_name(),
        codec=codec,
        router=Router(specs, codec),
        state_type=state_type,
        code_version=shape_digest(specs, state_type),
        collectors=bound_collectors(specs),
    )


def shape_digest(specs: dict[str, StepSpec], state_type: type[BaseModel]) -> str:
    """12 hex digits that change when a step, its events or the state type change."""
    lines = [f"state {state_type.__module__}.{state_type.__qualname__}"]
    for name in sorted(specs):
        spec = specs[name]
        takes = sorted(event_type_name(t) for t in spec.accepted_events)
        emits = sorted(event_type_name(t) for t in spec.output_events)
        lines.append(f"{spec.role} {name} {takes} -> {emits}")
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=6).hexdigest()
