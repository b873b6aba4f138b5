"""Serializers (upstream path ``workflows.context.serializers``); see ``_serializers``."""

from __future__ import annotations

from .._serializers import (
    BaseSerializer,
    JsonPickleSerializer,
    JsonSerializer,
    PickleSerializer,
    qualified_name,
)

__all__ = [
    "BaseSerializer",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "qualified_name",
]
