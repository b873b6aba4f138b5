"""Context, state store and serializers (same module path as upstream ``workflows.context``)."""

from __future__ import annotations

from .context import Context
from .serializers import BaseSerializer, JsonPickleSerializer, JsonSerializer, PickleSerializer
from .state_store import DictState, StateStore

__all__ = [
    "BaseSerializer",
    "Context",
    "DictState",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "StateStore",
]
