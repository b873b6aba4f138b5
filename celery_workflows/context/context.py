"""``Context``: a run's state store and its channel to the runtime.

A Context has three faces, like upstream's: before its run starts (config: a local state
and maybe a snapshot to resume), from outside a started run (the caller's handle: read
state, send events, stream, snapshot), and inside a step (one invocation of a delivery).
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from .._serializers import BaseSerializer, JsonSerializer
from ..errors import ContextSerdeError, ContextStateError, WorkflowRuntimeError
from ..events import Event, StopEvent
from .snapshot import ParsedSnapshot, parse_snapshot
from .state_store import DictState, LocalStateBackend, StateStore, default_state

if TYPE_CHECKING:
    from ..runtime.base import BaseRuntime
    from ..runtime.binding import Binding
    from ..runtime.step_context import Invocation
    from ..workflow import Workflow

# Defaults to DictState so that a bare ``Context`` annotation means untyped state.
MODEL_T = TypeVar("MODEL_T", bound=BaseModel, default=DictState)
T = TypeVar("T", bound=Event)


#: The Context of the step running in this task (set by the runtime around a step call).
current_step_context: contextvars.ContextVar[Context[Any]] = contextvars.ContextVar(
    "celery_workflows_current_step_context"
)


@dataclass
class _Pre:
    serializer: BaseSerializer
    store: StateStore[Any]
    backend: LocalStateBackend
    snapshot: ParsedSnapshot | None


@dataclass
class _External:
    runtime: BaseRuntime
    binding: Binding
    run_id: str
    serializer: BaseSerializer
    store: StateStore[Any]


@dataclass
class _Internal:
    invocation: Invocation


class Context(Generic[MODEL_T]):
    """The context of one workflow run; ``ctx.store`` is its state store.

    ``Context(workflow)`` makes a context to pass to ``workflow.run(ctx=...)``: run it
    again after it finished and the next run keeps the state. ``Context.from_dict()``
    restores a snapshot made by ``ctx.to_dict()``.
    """

    _face: _Pre | _External | _Internal

    def __init__(
        self,
        workflow: Workflow,
        previous_context: dict[str, Any] | None = None,
        serializer: BaseSerializer | None = None,
    ) -> None:
        self._workflow = workflow
        state_type = workflow._state_type()
        types = workflow._type_registry()
        # JSON by default, even when the workflow was given a PickleSerializer: unpickling
        # imports, so it happens only where the caller passes one for this snapshot.
        serializer = serializer or JsonSerializer()
        if isinstance(serializer, JsonSerializer):
            serializer = types = serializer.with_types(*types.registered_types)
        snapshot = None
        if previous_context:
            snapshot = parse_snapshot(previous_context, serializer, state_type, types)
            state = snapshot.state
        else:
            state = default_state(state_type)
        backend = LocalStateBackend(state)
        self._face = _Pre(serializer, StateStore(backend), backend, snapshot)

    # --- construction of the other faces --------------------------------------------------

    @classmethod
    def _for_step(cls, workflow: Workflow, invocation: Invocation) -> Context[Any]:
        ctx: Context[Any] = object.__new__(cls)
        ctx._workflow = workflow
        ctx._face = _Internal(invocation)
        return ctx

    def _attach(self, runtime: BaseRuntime, binding: Binding, run_id: str) -> None:
        """Bind this context to a started run (the caller's face)."""
        serializer = (
            self._face.serializer if isinstance(self._face, _Pre | _External) else JsonSerializer()
        )
        self._face = _External(
            runtime, binding, run_id, serializer, runtime.state_store(binding, run_id)
        )

    # --- phase guards ------------------------------------------------------------------

    def _external(self, fn: str) -> _External:
        if isinstance(self._face, _External):
            return self._face
        if isinstance(self._face, _Pre):
            raise ContextStateError(f"{fn} requires a running workflow. Call workflow.run() first.")
        raise ContextStateError(f"{fn} is only available from handler code, not from within steps.")

    def _internal(self, fn: str) -> Invocation:
        if isinstance(self._face, _Internal):
            return self._face.invocation
        if isinstance(self._face, _Pre):
            raise ContextStateError(f"{fn} requires a running workflow. Call workflow.run() first.")
        raise ContextStateError(f"{fn} is only available from within step functions.")

    # --- public API ------------------------------------------------------------------------

    @property
    def store(self) -> StateStore[MODEL_T]:
        """The run's state store (``get``, ``set``, ``edit_state()``, ...)."""
        face = self._face
        if isinstance(face, _Internal):
            return face.invocation.store
        return face.store

    @property
    def run_id(self) -> str | None:
        """The id of the run this context belongs to (None before it starts)."""
        face = self._face
        if isinstance(face, _Internal):
            return face.invocation.delivery.run_id
        return face.run_id if isinstance(face, _External) else None

    @property
    def is_running(self) -> bool:
        """Whether the run is in flight (or, before start, whether the snapshot was)."""
        face = self._face
        if isinstance(face, _Pre):
            return bool(face.snapshot and face.snapshot.is_running)
        if isinstance(face, _External):
            return face.runtime.is_running(face.run_id)
        return True

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """Snapshot of the context in upstream's v2 shape (JSON-compatible).

        Inside a step this returns the committed state of the run (upstream refuses).
        """
        serializer = serializer or JsonSerializer()
        face = self._face
        if isinstance(face, _Pre):
            from .snapshot import snapshot_dict

            running = bool(face.snapshot and face.snapshot.is_running)
            data = snapshot_dict(face.backend.current, serializer, is_running=running, workers={})
            if not include_state or (face.snapshot is None and not face.backend.written):
                data["state"] = {}  # as upstream: a fresh context has no state section yet
            return data
        if isinstance(face, _Internal):
            return face.invocation.snapshot(serializer, include_state)
        return face.runtime.snapshot(
            face.binding, face.run_id, serializer, include_state=include_state
        )

    @classmethod
    def from_dict(
        cls,
        workflow: Workflow,
        data: dict[str, Any],
        serializer: BaseSerializer | None = None,
    ) -> Context[Any]:
        """Restore a context from :meth:`to_dict` output (ContextSerdeError if malformed)."""
        try:
            return cls(workflow, previous_context=data, serializer=serializer)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ContextSerdeError(
                "Error creating a Context instance: the provided payload has a wrong or old format."
            ) from exc

    def send_event(self, message: Event, step: str | None = None) -> None:
        """Send an event to every accepting step, or to ``step`` only."""
        face = self._face
        if isinstance(face, _Internal):
            face.invocation.send_event(message, step)
        elif isinstance(face, _External):
            face.runtime.send_event(face.binding, face.run_id, message, step)
        else:
            raise ContextStateError(
                "send_event() called before workflow started. Call workflow.run() first."
            )

    async def wait_for_event(
        self,
        event_type: type[T],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: dict[str, Any] | None = None,
        timeout: float | None = 2000,
    ) -> T:
        """Wait for an event of ``event_type`` (the step re-runs from the top when it comes).

        ``waiter_event`` is written to the stream once per waiter; ``requirements`` filter
        the awaited event by field values. While waiting no worker is held.
        """
        inv = self._internal("wait_for_event")
        return inv.wait_for_event(event_type, waiter_event, waiter_id, requirements, timeout)  # type: ignore[return-value]

    def collect_events(
        self, ev: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``ev``; return the buffered events in ``expected`` order once all arrived."""
        return self._internal("collect_events").collect_events(ev, expected, buffer_id)

    def write_event_to_stream(self, ev: Event | None) -> None:
        """Publish ``ev`` on the run's event stream."""
        self._internal("write_event_to_stream").write_event_to_stream(ev)

    def retry_info(self) -> Any:
        """Retry state of the running step (retry number, elapsed, last exception)."""
        return self._internal("retry_info").retry_info()

    @staticmethod
    def get_step_context() -> Context[Any]:
        """The Context of the step running in this task."""
        try:
            return current_step_context.get()
        except LookupError:
            raise WorkflowRuntimeError(
                "Context.get_step_context() may only be called from within a step function"
            ) from None

    async def running_steps(self) -> list[str]:
        """Names of the steps with a running delivery."""
        face = self._external("running_steps")
        return await face.runtime.running_steps(face.run_id)

    def stream_events(self) -> AsyncIterator[Event]:
        """The run's event stream, ending with its StopEvent."""
        face = self._external("stream_events")
        return face.runtime.stream(face.binding, face.run_id)

    def get_result(self) -> Any:
        """Deprecated: await the handler instead."""
        warnings.warn(
            "Context.get_result() is deprecated; await the WorkflowHandler instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        face = self._external("get_result")
        stop = face.runtime.result_event(face.binding, face.run_id)
        return stop.result if type(stop) is StopEvent else stop
