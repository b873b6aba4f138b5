"""Sweepers never multiply a backlog, and publish each lost message again exactly once.

5,000 deliveries wait in the broker with no consumer while 4 sweeping workers (each
consuming only a queue nobody uses) run for 30 s, far past ``stale_after`` (3 s): the
broker keeps one message per delivery. Then the broker loses everything: the sweepers,
taking turns and stamping what they take, publish each delivery once more, no more.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import uuid
from typing import Any

import pytest
import redis
from workers import WorkerGroup, wait_until

from celery_workflows.events import StartEvent
from celery_workflows.store.base import NewDelivery

pytestmark = pytest.mark.integration

BACKLOG = 5000
QUIET_SECONDS = 30.0


def queued(client: redis.Redis, prefix: str) -> collections.Counter[str]:
    """Messages per delivery id of ours in the default queue."""
    counts: collections.Counter[str] = collections.Counter()
    for raw in client.lrange("celery", 0, -1):
        task_id = json.loads(raw)["headers"]["id"]
        if task_id.startswith(prefix):
            counts[task_id] += 1
    return counts


def start_backlog(p: Any, run_id: str) -> None:
    binding = p.runtime.binding(p.counter)
    event = binding.codec.encode_event(StartEvent())
    backlog = [NewDelivery(f"{run_id}:{i}", "count", event) for i in range(BACKLOG)]
    engine = p.runtime.engine
    asyncio.run(engine.start(binding, None, run_id=run_id, state={}, timeout=None, resume=backlog))


def test_sweepers_keep_a_backlog_at_one_message_per_delivery(workers: WorkerGroup) -> None:
    import cw_proj as p

    client = redis.Redis.from_url(os.environ["CW_TEST_BROKER"])
    client.delete("celery")
    run_id = f"backlog-{uuid.uuid4().hex[:8]}"
    start_backlog(p, run_id)
    assert len(queued(client, run_id)) == BACKLOG
    sweepers = [workers.start(f"s{i}", pool="solo", queues="cw_nobody") for i in range(4)]
    for i, proc in enumerate(sweepers):
        workers.wait_ready(proc, f"s{i}")
    most, deadline = 0, time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        most = max(most, client.llen("celery"))
        time.sleep(0.5)
    counts = queued(client, run_id)
    assert (len(counts), max(counts.values()), most) == (BACKLOG, 1, BACKLOG)

    client.delete("celery")  # the broker loses every message
    wait_until(lambda: client.llen("celery") >= BACKLOG, 60, "the backlog to be published again")
    time.sleep(2 * p.runtime.stale_after)  # sweeps that would publish anything twice
    counts = queued(client, run_id)
    assert (len(counts), max(counts.values())) == (BACKLOG, 1), workers.log_tail()
    client.delete("celery")
    client.close()
