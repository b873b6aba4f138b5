"""Every example runs twice: on the in-memory store and on the embedded SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_workflows.runtime import local
from celery_workflows.store.sql import SqlRunStore


@pytest.fixture(autouse=True, params=["memory", "sqlite"])
def default_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Point the default in-process runtime at the store under test."""
    if request.param == "memory":
        yield "memory"
        return
    stores: list[SqlRunStore] = []

    def make() -> SqlRunStore:
        stores.append(
            SqlRunStore(f"sqlite:///{tmp_path}/runs-{len(stores)}.db", create_schema=True)
        )
        return stores[-1]

    local.default_store_factory = make
    try:
        yield "sqlite"
    finally:
        local.default_store_factory = None
        for store in stores:
            asyncio.run(store.close())
