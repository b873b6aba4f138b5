"""Every example runs twice: on the in-memory store and on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded import embedded_sqlite_default


@pytest.fixture(autouse=True, params=["memory", "sqlite"])
def default_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Point the default in-process runtime at the store under test."""
    if request.param == "memory":
        yield "memory"
        return
    with embedded_sqlite_default(tmp_path):
        yield "sqlite"
