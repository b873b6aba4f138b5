"""PostgreSQL restarted or down while workers run: the runs finish once it is back.

Each test leaves the server running, as it found it (``services_back``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from services import postgres, postgres_answers, running
from workers import WorkerGroup, wait_until

pytestmark = pytest.mark.crash


def assert_exact(handlers: list[Any], workers: WorkerGroup) -> None:
    for handler in handlers:
        assert handler.result(timeout=90) == "done", workers.log_tail()
        state = asyncio.run(handler.ctx.store.get_state())
        assert state.steps == 3  # every step's edit exactly once


def test_runs_finish_after_postgres_restarts_mid_run(
    workers: WorkerGroup, services_back: None
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
    wait_until(lambda: running(p, handlers, "middle") >= 2, 60, "two middle steps running")
    postgres("restart")
    assert_exact(handlers, workers)


def test_a_worker_started_while_postgres_is_down_serves_runs_once_it_is_back(
    workers: WorkerGroup, services_back: None
) -> None:
    import cw_proj as p

    postgres("stop")
    try:
        worker = workers.start("w1")
        # The worker must come up (Celery says "ready") without its database, not die
        # importing the project.
        workers.wait_ready(worker, "w1")
    finally:
        postgres("start")
    wait_until(postgres_answers, 60, "PostgreSQL to accept connections")
    handlers: list[Any] = [p.slow.run() for _ in range(2)]
    assert_exact(handlers, workers)
    assert worker.poll() is None
