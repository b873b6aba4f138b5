"""``Context``: a run's state store and its channel to the runtime.

A Context has three faces, like upstream's: before its run starts (config: a local state
and maybe a snapshot to resume), from outside a started run (the caller's handle: read
state, send events, stream, snapshot), and inside a step (one invocation of a delivery).
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from .._serializers import BaseSerializer, JsonSerializer
from ..errors import ContextSerdeError, WorkflowRuntimeError
from ..events import Event, StopEvent
from .external_context import ExternalContext
from .internal_context import InternalContext
from .ports import RunPort, StepPort
from .pre_context import PreContext
from .snapshot import parse_snapshot
from .state_store import DictState, InMemoryStateStore, LocalStateBackend, StateStore, default_state

if TYPE_CHECKING:
    from ..workflow import Workflow

# Defaults to DictState so that a bare ``Context`` annotation means untyped state.
MODEL_T = TypeVar("MODEL_T", bound=BaseModel, default=DictState)
T = TypeVar("T", bound=Event)


class StepContextRef:
    """What the context variable holds while a step runs: its Context, let go (``ctx`` set
    to None) when the step ends. A timer or task the step left behind keeps a copy of the
    variable, so it must not keep the Context (and its workflow) alive."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Context[Any]) -> None:
        self.ctx: Context[Any] | None = ctx


#: The Context of the step running in this task (set by the runtime around a step call).
current_step_context: contextvars.ContextVar[StepContextRef] = contextvars.ContextVar(
    "celery_workflows_current_step_context"
)


class Context(Generic[MODEL_T]):
    """The context of one workflow run; ``ctx.store`` is its state store.

    ``Context(workflow)`` makes a context to pass to ``workflow.run(ctx=...)``: run it
    again after it finished and the next run keeps the state. ``Context.from_dict()``
    restores a snapshot made by ``ctx.to_dict()``.
    """

    #: The face of this context: upstream's PreContext, ExternalContext or
    #: InternalContext, so ``isinstance(ctx._face, ExternalContext)`` holds as upstream.
    _face: PreContext[MODEL_T] | ExternalContext[MODEL_T, Any] | InternalContext[MODEL_T]

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
        self._face = PreContext(serializer, InMemoryStateStore.over(backend), backend, snapshot)

    # --- the runtime's side: the step port and the run port ----------------------------

    @classmethod
    def _for_step(cls, workflow: Workflow, port: StepPort) -> Context[Any]:
        """The Context a step body gets."""
        ctx: Context[Any] = object.__new__(cls)
        ctx._workflow = workflow
        ctx._face = InternalContext(port)
        return ctx

    def _attach(self, port: RunPort) -> None:
        """Bind this context to a started run (the caller's face)."""
        self._face = ExternalContext(port, self._face.serializer)

    def _not_started(self) -> PreContext[MODEL_T] | None:
        """The pre-run face (state, snapshot) of a context whose run has not started."""
        return self._face if isinstance(self._face, PreContext) else None

    # --- public API ------------------------------------------------------------------------

    @property
    def store(self) -> StateStore[MODEL_T]:
        """The run's state store (``get``, ``set``, ``edit_state()``, ...)."""
        return self._face.store

    @property
    def run_id(self) -> str | None:
        """The id of the run this context belongs to (None before it starts)."""
        return self._face.run_id

    @property
    def is_running(self) -> bool:
        """Whether the run is in flight (or, before start, whether the snapshot was)."""
        return self._face.is_running

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """Snapshot of the context in upstream's v2 shape (JSON-compatible).

        Inside a step this returns the committed state of the run (upstream refuses).
        """
        return self._face.to_dict(serializer or JsonSerializer(), include_state=include_state)

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
        self._face.send_event(message, step)

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
        port = self._face.step("wait_for_event")
        event = port.wait_for_event(event_type, waiter_event, waiter_id, requirements, timeout)
        return event  # type: ignore[return-value]

    def collect_events(
        self, ev: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``ev``; return the buffered events in ``expected`` order once all arrived."""
        return self._face.step("collect_events").collect_events(ev, expected, buffer_id)

    def write_event_to_stream(self, ev: Event | None) -> None:
        """Publish ``ev`` on the run's event stream."""
        self._face.step("write_event_to_stream").write_event_to_stream(ev)

    def retry_info(self) -> Any:
        """Retry state of the running step (retry number, elapsed, last exception)."""
        return self._face.step("retry_info").retry_info()

    @staticmethod
    def get_step_context() -> Context[Any]:
        """The Context of the step running in this task."""
        ref = current_step_context.get(None)
        if ref is None or ref.ctx is None:
            raise WorkflowRuntimeError(
                "Context.get_step_context() may only be called from within a step function"
            )
        return ref.ctx

    async def running_steps(self) -> list[str]:
        """Names of the steps with a running delivery."""
        return await self._face.run("running_steps").running_steps()

    def stream_events(self) -> AsyncIterator[Event]:
        """The run's event stream, ending with its StopEvent."""
        return self._face.run("stream_events").stream()

    def get_result(self) -> Any:
        """Deprecated: await the handler instead."""
        warnings.warn(
            "Context.get_result() is deprecated; await the WorkflowHandler instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        stop = self._face.run("get_result").result_event()
        return stop.result if type(stop) is StopEvent else stop
