"""Bad input at the runtime: ``Workflow.run()`` with the default runtime, in-process
(in-memory store) and on the embedded SQLite store.

A run id started again must mean the same start on every store. The JSON rules (no NaN
or infinity, no NUL character, state under ``max_state_bytes``) hold where runs are kept
as JSON; in-process, the in-memory store keeps live objects as upstream does, so nothing
is lost there and nothing is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded import embedded_sqlite_default

from celery_workflows import Context, Workflow, step
from celery_workflows.errors import RunConflictError
from celery_workflows.events import StartEvent, StopEvent

WAIT = 30.0


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test on the default runtime over each store."""
    if request.param == "memory":
        yield "memory"
        return
    with embedded_sqlite_default(tmp_path):
        yield "sqlite"


class Echo(Workflow):
    @step
    async def echo(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return StopEvent(result=ev.get("x"))


class OtherEcho(Workflow):
    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="other")


# --- item: the same run id, started again -----------------------------------------------


async def test_the_same_run_id_with_other_start_arguments_raises_conflict(store_kind: str) -> None:
    workflow = Echo(timeout=WAIT)
    first = workflow.run(run_id="order-1", x=1)
    with pytest.raises(RunConflictError) as raised:
        workflow.run(run_id="order-1", x=2)
    assert "run 'order-1'" in str(raised.value) and "start event" in str(raised.value)
    assert await asyncio.wait_for(first, WAIT) == 1
    assert await first.ctx.store.get("n") == 1


async def test_the_same_run_id_with_another_workflow_raises_conflict(store_kind: str) -> None:
    first = Echo(timeout=WAIT).run(run_id="order-2", x=1)
    with pytest.raises(RunConflictError, match=r"run 'order-2'.*\.Echo'.*\.OtherEcho'"):
        OtherEcho(timeout=WAIT).run(run_id="order-2", x=1)
    assert await asyncio.wait_for(first, WAIT) == 1


async def test_the_same_run_id_with_the_same_start_is_one_run(store_kind: str) -> None:
    workflow = Echo(timeout=WAIT)
    first = workflow.run(run_id="order-3", x=1)
    second = workflow.run(run_id="order-3", start_event=StartEvent(x=1))
    assert first.run_id == second.run_id == "order-3"
    assert await asyncio.wait_for(first, WAIT) == 1
    assert await asyncio.wait_for(second, WAIT) == 1
    assert await first.ctx.store.get("n") == 1


async def test_starting_a_finished_run_again_does_not_hold_a_concurrency_slot(
    store_kind: str,
) -> None:
    workflow = Echo(timeout=WAIT, num_concurrent_runs=1)
    assert await asyncio.wait_for(workflow.run(run_id="once", x=1), WAIT) == 1
    assert await asyncio.wait_for(workflow.run(run_id="once", x=1), WAIT) == 1
    assert await asyncio.wait_for(workflow.run(run_id="next", x=2), WAIT) == 2
