"""Fixtures for tests that run real Celery workers over real Redis and PostgreSQL.

The test process and its workers import the same project (``cw_proj``), configured by
environment variables set once per session, before the first import of ``cw_proj``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from workers import HERE, WorkerGroup

# Separate Redis databases let two checkouts run their suites side by side.
REDIS_DB = int(os.environ.get("CW_TEST_CELERY_REDIS_DB", "5"))


@pytest.fixture(scope="session")
def celery_env(
    create_postgres_database: Callable[[], str],
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Environment shared by the tests and their workers: one database, a clean queue."""
    import redis

    broker = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    client.close()
    hold = tmp_path_factory.mktemp("hold")
    settings = {
        "CW_TEST_BROKER": broker,
        "CW_TEST_DATABASE": create_postgres_database(),
        "CW_TEST_HOLD_DIR": str(hold),
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    try:
        yield env
    finally:
        project = sys.modules.get("cw_proj")
        if project is not None:
            asyncio.run(project.runtime.store.close())
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerGroup]:
    """Real worker processes (started by the test); all stopped at teardown."""
    group = WorkerGroup(celery_env, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
