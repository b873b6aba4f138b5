"""A soak that mixes every fault: 100 fan-out/edit/join runs over two worker processes,
while three random SIGKILLs of a worker's process group, one Redis restart that loses
every message, and one PostgreSQL restart happen. Every run finishes with exactly the
expected state, none is left running, and the broker's queue drains back to zero.

The order of the faults and the victims come from a seeded random generator; the seed is
printed (``CW_SOAK_SEED`` replays a run). Redis and PostgreSQL are left running.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest
import redis
from services import postgres, postgres_answers, restart_redis
from workers import WorkerGroup, wait_until

pytestmark = pytest.mark.crash

RUNS = 100
TICKS = 5  # each run: split -> 5 parallel edits -> gather
EXPECTED = {"count": TICKS, "total": sum(range(TICKS))}


class Soak:
    """The fault schedule, applied to a group of two live workers."""

    def __init__(self, workers: WorkerGroup, rng: random.Random) -> None:
        self.workers = workers
        self.rng = rng
        self.live = [workers.start("w0"), workers.start("w1")]
        self.started = 2
        self.log: list[str] = []

    def kill_one(self) -> None:
        victim = self.rng.choice(self.live)
        self.workers.kill(victim)
        self.live.remove(victim)
        self.live.append(self.workers.start(f"w{self.started}"))
        self.started += 1
        self.log.append(f"SIGKILL worker group {victim.pid}")

    def restart_redis(self) -> None:
        restart_redis(os.environ["CW_TEST_BROKER"])
        self.log.append("Redis restarted, data lost")

    def restart_postgres(self) -> None:
        postgres("restart")
        self.log.append("PostgreSQL restarted")


def finished(p: Any, run_ids: list[str]) -> int:
    async def count() -> int:
        return sum([(await p.runtime.store.get_run(r)).finished for r in run_ids])

    return asyncio.run(count())


def test_a_soak_of_kills_and_service_restarts_leaves_every_run_exact(
    workers: WorkerGroup, services_back: None
) -> None:
    import cw_proj as p

    seed = int(os.environ.get("CW_SOAK_SEED", str(random.randrange(1 << 30))))
    print(f"\nsoak seed {seed}")
    rng = random.Random(seed)
    workers.env["CW_TEST_ADD_SLEEP"] = "0.1"  # the runs take long enough to be hit
    try:
        soak = Soak(workers, rng)
        for proc, name in zip(soak.live, ("w0", "w1"), strict=True):
            workers.wait_ready(proc, name)
        started = time.monotonic()
        handlers = [p.fan_out.run(n=TICKS) for _ in range(RUNS)]
        faults = [soak.kill_one] * 3 + [soak.restart_redis, soak.restart_postgres]
        rng.shuffle(faults)
        for fault in faults:
            time.sleep(rng.uniform(1.0, 3.0))  # the schedule itself: faults land mid-run
            fault()
    finally:
        del workers.env["CW_TEST_ADD_SLEEP"]
    wait_until(postgres_answers, 60, "PostgreSQL to answer")
    run_ids = [h.run_id for h in handlers]
    wait_until(lambda: finished(p, run_ids) == RUNS, 240, "every run to finish")
    elapsed = time.monotonic() - started
    for handler in handlers:
        assert handler.result(timeout=10) == EXPECTED, (soak.log, workers.log_tail())
        state = asyncio.run(handler.ctx.store.get_state())
        assert (state["edits"], state["total"]) == (TICKS, EXPECTED["total"])
    broker = redis.Redis.from_url(os.environ["CW_TEST_BROKER"])
    try:
        wait_until(lambda: broker.llen("celery") == 0, 60, "the broker queue to drain")
    finally:
        broker.close()
    print(f"soak: {RUNS} runs done in {elapsed:.1f}s through {'; '.join(soak.log)}")
