"""Run stores: the seam between the runtime and the database (see ``base``)."""

from __future__ import annotations

from .base import RunStore
from .memory import InMemoryRunStore

__all__ = ["InMemoryRunStore", "RunStore"]
