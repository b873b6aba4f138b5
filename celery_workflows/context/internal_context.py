"""``InternalContext``: the face of a Context inside a step (upstream's name). Everything
goes through the step port: the runtime's invocation of one delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._serializers import BaseSerializer, JsonSerializer
from ..events import Event
from ._face import MODEL_T, PortedFace
from .ports import StepPort


@dataclass
class InternalContext(PortedFace[MODEL_T]):
    """One run of a step body: events out, collect buffers, the stream, retry state."""

    port: StepPort
    serializer: BaseSerializer = field(default_factory=JsonSerializer)

    def step(self, fn: str) -> StepPort:
        """The step port."""
        return self.port

    @property
    def is_running(self) -> bool:
        """Always True: a step runs inside a live run."""
        return True

    def collect_events(
        self, ev: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``ev``; the buffered events in ``expected`` order once all arrived."""
        return self.port.collect_events(ev, expected, buffer_id)

    def write_event_to_stream(self, ev: Event | None) -> None:
        """Publish ``ev`` on the run's event stream."""
        self.port.write_event_to_stream(ev)

    def retry_info(self) -> Any:
        """Retry state of this attempt."""
        return self.port.retry_info()
