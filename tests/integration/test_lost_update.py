"""Invariant 1: concurrent increments from many OS processes never lose an update.

Four processes (spawned, so nothing is shared but the database) each add 1 to one run's
state 250 times through ``locked()``. The row lock must make the total exactly 1000.

The same workload through a deliberately wrong store, whose lock is process-local and
whose read takes no database lock, must lose updates: that proves the test can fail.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import create_engine, select, update

from celery_workflows.store.base import NewRun
from celery_workflows.store.sql import SqlRunStore, upgrade
from celery_workflows.store.sql.schema import runs

pytestmark = pytest.mark.integration

PROCESSES = 4
INCREMENTS = 250
JOIN_TIMEOUT_S = 120.0
RUN_ID = "run-lost-update"


class _Lockable(Protocol):
    def locked(self, run_id: str) -> Any: ...


class _ReadRow:
    def __init__(self, state: Any) -> None:
        self.state = state


class ProcessLocalLockStore:
    """Deliberately wrong: a process-local lock around a plain read and a blind write.

    The read takes no row lock (no ``FOR UPDATE``, no ``BEGIN IMMEDIATE``), so another
    process can read the same value before this one writes: its update is then lost.
    """

    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        self._engine = create_engine(url, connect_args={"timeout": 60} if sqlite else {})
        self._lock = threading.Lock()  # guards nothing across processes: the bug
        self.state: Any = None
        self.run: _ReadRow = _ReadRow(None)

    def set_state(self, state: Any) -> None:
        self.state = state

    @asynccontextmanager
    async def locked(self, run_id: str) -> AsyncIterator[ProcessLocalLockStore]:
        with self._lock:
            with self._engine.begin() as conn:
                row = conn.execute(select(runs.c.state).where(runs.c.run_id == run_id)).one()
            self.run = _ReadRow(row.state)
            yield self
            with self._engine.begin() as conn:
                stmt = update(runs).where(runs.c.run_id == run_id).values(state=self.state)
                conn.execute(stmt)

    def close(self) -> None:
        self._engine.dispose()


async def _increment(target: _Lockable, count: int) -> None:
    for _ in range(count):
        async with target.locked(RUN_ID) as txn:
            state = dict(txn.run.state)
            state["count"] += 1
            txn.set_state(state)


async def _work(url: str, broken: bool, count: int, barrier: Any) -> None:
    if broken:
        wrong = ProcessLocalLockStore(url)
        barrier.wait(timeout=60)
        try:
            await _increment(wrong, count)
        finally:
            wrong.close()
        return
    store = SqlRunStore(url, busy_timeout_s=60)
    barrier.wait(timeout=60)
    try:
        await _increment(store, count)
    finally:
        await store.close()


def increment_in_process(url: str, broken: bool, count: int, barrier: Any) -> None:
    """Entry point of one spawned process."""
    asyncio.run(_work(url, broken, count, barrier))


@contextmanager
def _started(url: str, broken: bool) -> Iterator[list[Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=increment_in_process, args=(url, broken, INCREMENTS, barrier))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=10)
            proc.close()


def _run_workload(url: str, broken: bool) -> int:
    asyncio.run(_create_run(url))
    with _started(url, broken) as procs:
        for proc in procs:
            proc.join(timeout=JOIN_TIMEOUT_S)
            assert not proc.is_alive(), f"a worker process hung for {JOIN_TIMEOUT_S}s"
            assert proc.exitcode == 0, f"a worker process failed (exit code {proc.exitcode})"
    return asyncio.run(_read_count(url))


async def _create_run(url: str) -> None:
    store = SqlRunStore(url)
    try:
        await store.create_run(NewRun(RUN_ID, "counter", {"count": 0}, {}), [])
    finally:
        await store.close()


async def _read_count(url: str) -> int:
    store = SqlRunStore(url)
    try:
        return int((await store.get_run(RUN_ID)).state["count"])
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        create: Callable[[], str] = request.getfixturevalue("create_postgres_database")
        url = create()
    upgrade(url)
    return url


@pytest.mark.timeout(300)
def test_increments_from_many_processes_through_locked_never_lose_an_update(
    database_url: str,
) -> None:
    assert _run_workload(database_url, broken=False) == PROCESSES * INCREMENTS


@pytest.mark.timeout(300)
def test_increments_under_a_process_local_lock_lose_updates(database_url: str) -> None:
    total = _run_workload(database_url, broken=True)
    assert total < PROCESSES * INCREMENTS, "the wrong store must lose updates"
    assert total > 0
