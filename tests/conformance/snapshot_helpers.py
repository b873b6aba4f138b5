"""Helpers of the conformance tests that keep and restore snapshots.

Event classes those tests define per implementation (inside a test) are published on
the test's module, so a ``JsonSerializer`` (which names a class by its module and name)
finds them there.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest


def publish(monkeypatch: pytest.MonkeyPatch, *classes: type) -> None:
    """Make classes findable as ``<their module>.<name>`` (undone after the test)."""
    for cls in classes:
        monkeypatch.setattr(sys.modules[cls.__module__], cls.__name__, cls, raising=False)


def as_json(impl: SimpleNamespace, ctx: Any) -> dict[str, Any]:
    """``ctx.to_dict()`` through JSON text, as a snapshot is kept."""
    data: dict[str, Any] = json.loads(json.dumps(ctx.to_dict(serializer=impl.JsonSerializer())))
    return data
