"""``WorkflowTestRunner``: run a workflow end to end and collect what it streamed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events import Event, StartEvent

if TYPE_CHECKING:
    from ..context.context import Context
    from ..workflow import Workflow


@dataclass
class WorkflowTestResult:
    """Streamed events, their counts by type, the result and the run's context."""

    collected: list[Event]
    event_types: dict[type[Event], int]
    result: Any
    ctx: Context[Any]


class WorkflowTestRunner:
    """Runs a workflow and collects the events it streams."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def run(
        self,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        expose_internal: bool = True,
        exclude_events: list[type[Event]] | None = None,
    ) -> WorkflowTestResult:
        """Run to the end; return the streamed events (minus ``exclude_events``)."""
        handler = self._workflow.run(start_event=start_event or StartEvent(), ctx=ctx)
        collected: list[Event] = []
        async for event in handler.stream_events(expose_internal=expose_internal):
            if exclude_events and type(event) in exclude_events:
                continue
            collected.append(event)
        result = await handler
        counts = dict(Counter(type(e) for e in collected))
        return WorkflowTestResult(collected, counts, result, handler.ctx)
