"""The two ports through which a Context reaches its runtime (the core imports no runtime).

A Context inside a step talks to a :class:`StepPort` (the runtime's invocation of the
delivery); a Context held by a caller talks to a :class:`RunPort` (the runtime's handle on
a started run). These are upstream's internal and external adapters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from .._serializers import BaseSerializer
from ..events import Event, StopEvent
from .state_store import StateStore

__all__ = ["RunPort", "StepPort"]


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

    def stream(self) -> AsyncIterator[Event]:
        """The run's event stream, ending with its StopEvent."""
        ...

    def result_event(self) -> StopEvent:
        """The StopEvent of the finished run (or raise what it failed with)."""
        ...
