"""Fixtures of the run store contract suite: one ``store`` per implementation.

``store`` runs every test against the in-memory store, SQLite (a file in tmp_path) and
PostgreSQL (one database per session, emptied before each test). Every store reads time
from ``clock``, a fake that tests move forward.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from celery_workflows.store.base import RunStore
from celery_workflows.store.memory import InMemoryRunStore
from celery_workflows.store.sql import SqlRunStore, upgrade

STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)]


class FakeClock:
    """A UTC clock that only moves when told, plus one microsecond per reading.

    The tick keeps successive timestamps distinct, as a real clock's would be.
    """

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock every store of the test reads."""
    return FakeClock()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated to the newest schema once."""
    upgrade(postgres_url)
    return postgres_url


def _empty_postgres(url: str) -> None:
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE cw_stream, cw_journal, cw_deliveries, cw_runs")


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The database URL behind ``store`` (None for the in-memory store)."""
    kind = request.param
    if kind == "memory":
        yield None
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        upgrade(url)
        yield url
    else:
        url = request.getfixturevalue("migrated_postgres_url")
        _empty_postgres(url)
        yield url


@pytest.fixture
async def make_store(
    store_url: str | None, clock: FakeClock
) -> AsyncIterator[Callable[[], RunStore]]:
    """Opens more stores on the same database (each is closed after the test).

    For the in-memory store, whose database is the object itself, it returns one store.
    """
    opened: list[RunStore] = []
    memory = InMemoryRunStore(clock=clock)

    def make() -> RunStore:
        new: RunStore = memory if store_url is None else SqlRunStore(store_url, clock=clock)
        opened.append(new)
        return new

    yield make
    for opened_store in opened:
        await opened_store.close()


@pytest.fixture
def store(make_store: Callable[[], RunStore]) -> RunStore:
    """The store under test."""
    return make_store()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that uses a store over the implementations."""
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", STORES, indirect=True)
