"""``PreContext``: the face of a Context whose run has not started (upstream's name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._serializers import BaseSerializer, JsonSerializer
from ..errors import ContextStateError
from ..events import Event
from ._face import MODEL_T, Face
from .ports import RunPort, StepPort
from .snapshot import ParsedSnapshot, snapshot_dict
from .state_store import LocalStateBackend, StateStore

_NOT_STARTED = "{fn} requires a running workflow. Call workflow.run() first."


@dataclass
class PreContext(Face[MODEL_T]):
    """Before the run starts: a local state, maybe a snapshot to resume."""

    serializer: BaseSerializer
    store: StateStore[MODEL_T]
    backend: LocalStateBackend
    snapshot: ParsedSnapshot | None
    run_id: str | None = None

    def step(self, fn: str) -> StepPort:
        """Refused: the run has not started."""
        raise ContextStateError(_NOT_STARTED.format(fn=fn))

    def run(self, fn: str) -> RunPort:
        """Refused: the run has not started."""
        raise ContextStateError(_NOT_STARTED.format(fn=fn))

    @property
    def is_running(self) -> bool:
        """Whether the snapshot this context restores was taken of a live run."""
        return bool(self.snapshot and self.snapshot.is_running)

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """The snapshot the next run starts from (upstream's v2 shape)."""
        data = snapshot_dict(
            self.backend.current,
            serializer or JsonSerializer(),
            is_running=self.is_running,
            workers={},
        )
        if not include_state or (self.snapshot is None and not self.backend.written):
            data["state"] = {}  # as upstream: a fresh context has no state section yet
        return data

    def send_event(self, message: Event, step: str | None = None) -> None:
        """Refused: the run has not started."""
        raise ContextStateError(
            "send_event() called before workflow started. Call workflow.run() first."
        )
