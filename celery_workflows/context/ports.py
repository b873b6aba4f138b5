"""The ports through which the core reaches a runtime (the core imports no runtime).

A Context inside a step talks to a :class:`StepPort` (the runtime's invocation of the
delivery); a Context or handler held by a caller talks to a :class:`RunPort` (the
runtime's handle on a started run). These are upstream's internal and external adapters.
A workflow starts runs through a :class:`RuntimePort` (``BaseRuntime`` and subclasses).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from .._serializers import BaseSerializer
from ..events import Event, StartEvent, StopEvent
from .state_store import StateStore

if TYPE_CHECKING:
    from ..handler import WorkflowHandler
    from ..workflow import Workflow
    from .context import Context

__all__ = ["RunPort", "RuntimePort", "StepPort"]


class StepPort(Protocol):
    """One run of a step body: what ``ctx`` reaches from inside the step."""

    @property
    def store(self) -> StateStore[Any]:
        """The state store, fenced to this attempt and journaled."""
        ...

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    def snapshot(self, serializer: BaseSerializer, include_state: bool) -> dict[str, Any]:
        """The run's committed snapshot (``ctx.to_dict()``)."""
        ...

    def send_event(self, event: Event, step: str | None) -> None:
        """Send an event from the step."""
        ...

    def wait_for_event(
        self,
        event_type: type[Event],
        waiter_event: Event | None,
        waiter_id: str | None,
        requirements: dict[str, Any] | None,
        timeout: float | None,
    ) -> Event:
        """The awaited event, or suspend the step until it arrives."""
        ...

    def collect_events(
        self, event: Event, expected: list[type[Event]], buffer_id: str | None
    ) -> list[Event] | None:
        """The collected events in ``expected`` order once all arrived, else None."""
        ...

    def write_event_to_stream(self, event: Event | None) -> None:
        """Append to the run's stream."""
        ...

    def retry_info(self) -> Any:
        """Retry state of this attempt."""
        ...


class RunPort(Protocol):
    """A started run, seen by a caller (a handler, a web request, another process)."""

    @property
    def store(self) -> StateStore[Any]:
        """The caller's view of the run's state (writes lock the run row)."""
        ...

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    @property
    def workflow_name(self) -> str:
        """The name of the run's workflow."""
        ...

    def status(self) -> str:
        """The run's committed status (running, waiting, completed, failed, cancelled)."""
        ...

    def is_running(self) -> bool:
        """True while the run has not ended."""
        ...

    def snapshot(self, serializer: BaseSerializer, include_state: bool) -> dict[str, Any]:
        """The run's committed snapshot (``ctx.to_dict()``)."""
        ...

    def send_event(self, event: Event, step: str | None) -> None:
        """Send an event into the run."""
        ...

    async def running_steps(self) -> list[str]:
        """Steps with a running delivery."""
        ...

    def stream(self, internal: bool = False) -> AsyncIterator[Event]:
        """The run's event stream, ending with its StopEvent (``internal``: the reader
        wants the runtime's internal events, which a runtime may write only on request)."""
        ...

    def result_event(self) -> StopEvent:
        """The StopEvent of the finished run (or raise what it failed with)."""
        ...

    async def result(self) -> StopEvent:
        """Wait for the run to end: its StopEvent, or raise what it ended with."""
        ...

    async def send(self, event: Event, step: str | None) -> None:
        """Send an event into the run and wait for it to be committed."""
        ...

    async def cancel(self) -> None:
        """Cancel the run (committed when this returns)."""
        ...


class RuntimePort(Protocol):
    """Where a workflow's runs execute: the in-process runtime or ``CeleryRuntime``."""

    def binding(self, workflow: Workflow) -> object:
        """Register ``workflow`` (idempotent); what the runtime keeps for it."""
        ...

    def start(
        self,
        workflow: Workflow,
        ctx: Context[Any],
        start_event: StartEvent | None,
        run_id: str | None,
    ) -> WorkflowHandler:
        """Create a run of ``workflow`` for ``ctx`` and return its handler."""
        ...

    def get_handler(self, run_id: str) -> WorkflowHandler:
        """A handler on an existing run, from any process."""
        ...
