"""The names most conformance tests bind first, from either implementation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def basics(impl: SimpleNamespace) -> tuple[Any, Any, Any, Any, Any]:
    """``Event, StartEvent, StopEvent, step, Context`` of ``impl`` (bind them to locals:
    step annotations are resolved against the test's scope)."""
    return impl.Event, impl.StartEvent, impl.StopEvent, impl.step, impl.Context
