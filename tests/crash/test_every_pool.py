"""Every worker pool recovers lost runs: its sweeper starts with the worker, not with a
step task or a prefork-only signal.

A worker is SIGKILLed mid-step, the broker loses every message, and a new worker of the
same pool starts: nothing will ever arrive from the broker, so only that worker's sweeper
can finish the runs (the killed attempt's lease expires; the lost pending messages are
published again once the queue is seen empty).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import redis
from services import running
from workers import WorkerGroup, wait_until

pytestmark = pytest.mark.crash

POOLS = ["prefork", "threads", "solo"]


@pytest.mark.parametrize("pool", POOLS)
def test_a_new_worker_of_each_pool_finishes_runs_the_broker_lost(
    workers: WorkerGroup, pool: str
) -> None:
    import cw_proj as p

    workers.env["CW_TEST_STEP_SLEEP"] = "2"
    try:
        first = workers.start("w1", pool=pool)
    finally:
        del workers.env["CW_TEST_STEP_SLEEP"]
    handlers: list[Any] = [p.slow.run() for _ in range(4)]
    wait_until(lambda: running(p, handlers, "middle") >= 1, 60, "a middle step running")
    workers.kill(first)
    broker = redis.Redis.from_url(os.environ["CW_TEST_BROKER"])
    try:
        broker.flushdb()  # every queued and unacked message is gone
    finally:
        broker.close()
    second = workers.start("w2", pool=pool)
    workers.wait_ready(second, "w2")
    for handler in handlers:
        assert handler.result(timeout=60) == "done", workers.log_tail()
        state = asyncio.run(handler.ctx.store.get_state())
        assert state.steps == 3  # no lost and no doubled edit
    workers.stop_all()  # a warm shutdown: the sweeper and heartbeats stop with the worker
    assert second.returncode == 0, workers.log_tail()
    assert "cannot schedule new futures" not in workers.log_tail(400)
