"""Fixtures shared by every test directory: the real services (PostgreSQL, Redis).

Tests that need a server are marked ``@pytest.mark.integration``. When the server cannot
be reached they are skipped on a laptop and fail when ``CI`` is set (a CI run that
silently skipped its integration tests would prove nothing).

Addresses default to the local services and can be moved with ``CW_TEST_POSTGRES_URL``
(an admin connection, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and ``CW_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "CW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def service_unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it when the ``CI`` environment variable is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


def _admin_conninfo() -> str:
    url = make_url(POSTGRES_ADMIN_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def create_postgres_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, uniquely named PostgreSQL databases, dropped at session end.

    Each call returns the SQLAlchemy URL of a new empty database.
    """

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=5)

    try:
        admin = [connect()]
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {exc}")
    created: list[str] = []

    def execute(statement: sql.Composed) -> None:
        # A crash test may restart the server: reconnect once if the session was cut.
        try:
            admin[0].execute(statement)
        except psycopg.OperationalError:
            admin[0].close()
            admin[0] = connect()
            admin[0].execute(statement)

    def create() -> str:
        name = f"cw_test_{uuid.uuid4().hex[:12]}"
        execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = make_url(POSTGRES_ADMIN_URL).set(database=name)
        return url.render_as_string(hide_password=False)

    try:
        yield create
    finally:
        for name in created:
            # FORCE: a test that died mid-way may have left connections open.
            execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin[0].close()


@pytest.fixture(scope="session")
def postgres_url(create_postgres_database: Callable[[], str]) -> str:
    """URL of a fresh PostgreSQL database for this session (empty: no schema)."""
    return create_postgres_database()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis database (``/15`` unless ``CW_TEST_REDIS_URL`` says)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    finally:
        client.close()
    return REDIS_URL


# Real-worker fixtures (tests/integration and tests/crash): defined here, once, because
# their session-scoped environment must be the same for every directory.
sys.path.insert(0, str(Path(__file__).parent / "integration"))
from celery_fixtures import celery_env, workers  # noqa: E402

__all__ = ["celery_env", "workers"]
