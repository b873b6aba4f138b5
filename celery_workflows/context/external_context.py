"""``ExternalContext``: the face of a started run's Context held by its caller (a handler,
a web request, another process); upstream's name. Everything goes through the run port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic

from typing_extensions import TypeVar

from .._serializers import BaseSerializer
from ..events import Event, StopEvent
from ._face import MODEL_T, PortedFace
from .ports import RunPort

RunResultT = TypeVar("RunResultT", default=Any)


@dataclass
class ExternalContext(PortedFace[MODEL_T], Generic[MODEL_T, RunResultT]):
    """A started run, seen from outside: state, events in, the stream, the result."""

    port: RunPort
    serializer: BaseSerializer

    def run(self, fn: str) -> RunPort:
        """The run port."""
        return self.port

    @property
    def is_running(self) -> bool:
        """True while the run has not ended."""
        return self.port.is_running()

    async def running_steps(self) -> list[str]:
        """Names of the steps with a running delivery."""
        return await self.port.running_steps()

    def stream_events(self) -> AsyncIterator[Event]:
        """The run's event stream, ending with its StopEvent."""
        return self.port.stream()

    def get_result(self) -> StopEvent:
        """The StopEvent of the finished run (raises what the run failed with)."""
        return self.port.result_event()
