"""What the engine hands committed deliveries to, and whom it tells of changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Dispatch:
    """A delivery to hand to workers (after its transaction committed)."""

    delivery_id: str
    run_id: str
    workflow_name: str
    step: str
    not_before: Any = None


class Dispatcher(Protocol):
    """Sends deliveries to whoever executes them."""

    def dispatch(self, items: Sequence[Dispatch]) -> None: ...


class Listener(Protocol):
    """Told when a run's stream or status changed (in-process waiters)."""

    def changed(self, run_id: str, *, finished: bool = False) -> None: ...


__all__ = ["Dispatch", "Dispatcher", "Listener"]
