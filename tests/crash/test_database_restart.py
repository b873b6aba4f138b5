"""PostgreSQL restarted or down while workers run: the runs finish once it is back.

Each test leaves the server running, as it found it (``postgres_back`` in a finally).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from workers import WorkerGroup, wait_until

pytestmark = pytest.mark.crash


def _cluster(action: str) -> None:
    """``pg_ctlcluster <action>`` on the local cluster (as ``scripts/services`` runs it)."""
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.fail("no local PostgreSQL cluster to restart")
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action]
    subprocess.run(cmd, check=True, timeout=60)


def _accepts_connections() -> bool:
    try:
        psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture
def postgres_back() -> Iterator[None]:
    """Whatever the test did to the server, it answers again afterwards."""
    try:
        yield
    finally:
        if not _accepts_connections():
            _cluster("start")
        wait_until(_accepts_connections, 60, "PostgreSQL to accept connections again")


def running_middles(p: Any, handlers: list[Any]) -> int:
    """How many of the runs have their middle step claimed by a worker right now."""

    async def count() -> int:
        steps = [await p.runtime.running_steps(h.run_id) for h in handlers]
        return sum("middle" in running for running in steps)

    return asyncio.run(count())


def assert_exact(handlers: list[Any], workers: WorkerGroup) -> None:
    for handler in handlers:
        assert handler.result(timeout=90) == "done", workers.log_tail()
        state = asyncio.run(handler.ctx.store.get_state())
        assert state.steps == 3  # every step's edit exactly once


def test_runs_finish_after_postgres_restarts_mid_run(
    workers: WorkerGroup, postgres_back: None
) -> None:
    import cw_proj as p

    workers.env["CW_TEST_STEP_SLEEP"] = "2"
    try:
        workers.start("w1")
    finally:
        del workers.env["CW_TEST_STEP_SLEEP"]
    handlers: list[Any] = [p.slow.run() for _ in range(4)]
    # Restart only once the worker really is inside middle steps (it sleeps 2 s in each,
    # concurrency 2): a fixed sleep restarted the server while a slow worker was still
    # importing the project, which tested something else (see the next test).
    wait_until(lambda: running_middles(p, handlers) >= 2, 60, "two middle steps running")
    _cluster("restart")
    assert_exact(handlers, workers)


def test_a_worker_started_while_postgres_is_down_serves_runs_once_it_is_back(
    workers: WorkerGroup, postgres_back: None
) -> None:
    import cw_proj as p

    _cluster("stop")
    try:
        worker = workers.start("w1")
        # The worker must come up (Celery says "ready") without its database, not die
        # importing the project.
        ready = lambda: "ready." in workers.log_tail(200) or worker.poll() is not None  # noqa: E731
        wait_until(ready, 60, "the worker to be ready or to exit")
        assert worker.poll() is None, f"the worker died without its database:\n{workers.log_tail()}"
    finally:
        _cluster("start")
    wait_until(_accepts_connections, 60, "PostgreSQL to accept connections")
    handlers: list[Any] = [p.slow.run() for _ in range(2)]
    assert_exact(handlers, workers)
    assert worker.poll() is None
