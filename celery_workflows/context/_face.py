"""What the three faces of a Context share: refusing what is not theirs, forwarding to a
port. The faces themselves live under upstream's module names (``pre_context``,
``external_context``, ``internal_context``), so ``isinstance(ctx._face, ...)`` checks
written for upstream hold here too."""

from __future__ import annotations

from typing import Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from .._serializers import BaseSerializer, JsonSerializer
from ..errors import ContextStateError
from ..events import Event
from .ports import RunPort, StepPort
from .state_store import DictState, StateStore

MODEL_T = TypeVar("MODEL_T", bound=BaseModel, default=DictState)


class Face(Generic[MODEL_T]):
    """One face of a Context; a face refuses what is not its own, with upstream's words."""

    def step(self, fn: str) -> StepPort:
        """The step port, for a method only a step may call."""
        raise ContextStateError(f"{fn} is only available from within step functions.")

    def run(self, fn: str) -> RunPort:
        """The run port, for a method only a caller of a started run may call."""
        raise ContextStateError(f"{fn} is only available from handler code, not from within steps.")


class PortedFace(Face[MODEL_T]):
    """A face that forwards to a port (the caller's and the step's faces share these)."""

    port: RunPort | StepPort

    @property
    def store(self) -> StateStore[MODEL_T]:
        """The run's state store."""
        return self.port.store

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.port.run_id

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """The run's snapshot in upstream's v2 shape."""
        return self.port.snapshot(serializer or JsonSerializer(), include_state)

    def send_event(self, message: Event, step: str | None = None) -> None:
        """Send ``message`` into the run (to ``step`` only, if named)."""
        self.port.send_event(message, step)
