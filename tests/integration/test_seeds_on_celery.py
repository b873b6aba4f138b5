"""The seed documentation samples run on the Celery runtime: real workers, Redis, PostgreSQL.

Run from sync code (``handler.result``) and from async code (``await handler``), with the
context carried across runs as the samples show (same Context; ``to_dict``/``from_dict``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from workers import WorkerGroup

pytestmark = pytest.mark.integration


def seeds() -> Any:
    import cw_seeds

    return cw_seeds


async def test_get_set_sample_counts_across_runs_of_one_context(workers: WorkerGroup) -> None:
    s = seeds()
    from celery_workflows import Context

    workers.start("w1")
    ctx: Context[Any] = Context(s.get_set)
    assert await asyncio.wait_for(s.get_set.run(ctx=ctx), 60) == 1
    assert await asyncio.wait_for(s.get_set.run(ctx=ctx), 60) == 2


async def test_locking_and_typed_state_samples(workers: WorkerGroup) -> None:
    s = seeds()
    from celery_workflows import Context

    workers.start("w1")
    assert await asyncio.wait_for(s.locking.run(), 60) == 1
    ctx: Context[Any] = Context(s.typed)
    assert await asyncio.wait_for(s.typed.run(ctx=ctx), 60) == "Done!"
    assert await asyncio.wait_for(s.typed.run(ctx=ctx), 60) == "Done!"
    state = await ctx.store.get_state()
    assert state.count == 2


async def test_stateful_flow_sample_loops_through_setup(workers: WorkerGroup) -> None:
    s = seeds()
    workers.start("w1")
    result = await asyncio.wait_for(s.stateful.run(query="Some query"), 60)
    assert result == [1, 2, 3]


async def test_typed_state_with_custom_serialization_sample(workers: WorkerGroup) -> None:
    s = seeds()
    from celery_workflows import Context

    workers.start("w1")
    ctx: Context[Any] = Context(s.my_stateful)
    assert await asyncio.wait_for(s.my_stateful.run(ctx=ctx), 60) == "Done!"
    state = await ctx.store.get_state()
    assert state.my_obj.name == "new_name"
    assert state.some_key == "some_value"


def test_context_carried_by_snapshot_sample_from_sync_code(workers: WorkerGroup) -> None:
    s = seeds()
    from celery_workflows import Context
    from celery_workflows.context import JsonSerializer

    workers.start("w1")
    handler = s.counting.run()
    assert handler.result(timeout=60) == "The step ran 1 times"
    handler = s.counting.run(ctx=handler.ctx)
    assert handler.result(timeout=60) == "The step ran 2 times"
    data = handler.ctx.to_dict(serializer=JsonSerializer())
    restored = Context.from_dict(s.counting, data, serializer=JsonSerializer())
    assert s.counting.run(ctx=restored).result(timeout=60) == "The step ran 3 times"
