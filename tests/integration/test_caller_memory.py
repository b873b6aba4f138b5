"""A caller (a web process, say) starting runs on Celery does not grow (issue 11, item 7).

Real workers run the steps; this process only starts runs and awaits them, as a web app
would. Its handlers and contexts are freed after each run, and its traced memory and
tracked objects stay flat over 2,000 runs.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from typing import Any

import pytest
from workers import WorkerGroup

pytestmark = pytest.mark.integration

#: Runs in flight at once from the caller (each awaits its result by polling the store).
IN_FLIGHT = 50


async def started_and_awaited(p: Any, count: int, refs: list[Any] | None = None) -> None:
    """Start ``count`` runs of the one-step Counter, ``IN_FLIGHT`` at a time, and await
    each (the result is 1: every run starts from empty state)."""

    async def one() -> None:
        handler = p.counter.run()
        assert await asyncio.wait_for(handler, 60) == 1
        if refs is not None:
            refs.extend((weakref.ref(handler), weakref.ref(handler.ctx)))

    for start in range(0, count, IN_FLIGHT):
        await asyncio.gather(*(one() for _ in range(min(IN_FLIGHT, count - start))))
    await asyncio.sleep(0)
    gc.collect()


async def test_a_caller_awaiting_two_thousand_celery_runs_does_not_grow(
    workers: WorkerGroup,
) -> None:
    import cw_proj as p  # configured by the celery_env fixture's environment

    workers.start("w1")
    workers.start("w2")
    tracemalloc.start()  # on from the first run: it sees only what is allocated after
    try:
        await started_and_awaited(p, 500)  # warm-up: pools, compiled statements, caches
        traced = [tracemalloc.get_traced_memory()[0]]
        objects = [len(gc.get_objects())]
        for _ in range(4):
            await started_and_awaited(p, 500)
            traced.append(tracemalloc.get_traced_memory()[0])
            objects.append(len(gc.get_objects()))
    finally:
        tracemalloc.stop()
    refs: list[Any] = []
    await started_and_awaited(p, 100, refs)
    for _ in range(3):  # streams left open are closed by loop callbacks
        await asyncio.sleep(0)
        gc.collect()
    assert [r for r in refs if r() is not None] == [], workers.log_tail()
    # 2,000 runs after the warm-up: under 200 KB and 1,000 tracked objects more than
    # after the warm-up (2,000 runs held by the caller would weigh megabytes).
    assert max(traced) - traced[0] < 200_000, traced
    assert max(objects) - objects[0] < 1_000, objects
    print(f"caller after warm-up, then per 500 runs: traced {traced}, objects {objects}")
