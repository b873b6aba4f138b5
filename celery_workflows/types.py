"""Type aliases for workflow results (upstream's ``workflows.types``)."""

from __future__ import annotations

from typing import Any, TypeVar

from .events import StopEvent

#: A StopEvent class (or subclass) a workflow ends with.
StopEventT = TypeVar("StopEventT", bound=StopEvent)
#: What a run returns: its StopEvent subclass instance, or any ``result`` value (upstream
#: spells it ``StopEventT | Any``, which is ``Any`` to a type checker).
RunResultT = Any

__all__ = ["RunResultT", "StopEventT"]
