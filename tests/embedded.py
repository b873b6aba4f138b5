"""Point the default in-process runtime at embedded SQLite stores (for parametrized suites)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery_workflows.runtime import local
from celery_workflows.store.sql import SqlRunStore


@contextmanager
def embedded_sqlite_default(directory: Path, **store_options: Any) -> Iterator[None]:
    """While active, each new default runtime gets a fresh SQLite file in ``directory``.

    ``store_options`` go to each ``SqlRunStore`` (e.g. ``max_state_bytes``).
    """
    stores: list[SqlRunStore] = []

    def make() -> SqlRunStore:
        url = f"sqlite:///{directory}/runs-{len(stores)}.db"
        stores.append(SqlRunStore(url, create_schema=True, **store_options))
        return stores[-1]

    local.default_store_factory = make
    try:
        yield
    finally:
        local.default_store_factory = None
        for store in stores:
            asyncio.run(store.close())
