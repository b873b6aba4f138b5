"""Samples of the "Managing State" page, seeds 000 and 001.

Seed 000 is a mangled scrape of the same page as seed 001 (keywords glued together,
``workflow.run=ctx)``); the samples below use seed 001's clean text, which is the same
code. Each sample is verbatim but for the import lines; where a sample is a bare method
or never runs its workflow, the test adds (and marks) the minimum needed to run it.
"""

import pytest


async def test_my_workflow_counts_with_store_get_and_set() -> None:
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
            current_count = await ctx.store.get("count", default=0)
            current_count += 1
            await ctx.store.set("count", current_count)
            return StopEvent()

    # Added: the page only defines the workflow.
    handler = MyWorkflow().run()
    assert await handler is None
    assert await handler.ctx.store.get("count") == 1


async def test_locking_the_state_sample_fails_with_name_error() -> None:
    # The sample binds ``ctx_state`` but tests ``"count" not in state``: ``state`` is
    # undefined, so upstream fails the run with NameError when the step body runs. The
    # page shows a bare method; the class around it is added.
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
            # No other steps can access the state while the `with` block is running
            async with ctx.store.edit_state() as ctx_state:
                if "count" not in state:  # noqa: F821
                    ctx_state["count"] = 0
                ctx_state["count"] += 1
            return StopEvent()

    with pytest.raises(NameError, match="name 'state' is not defined"):
        await MyWorkflow(timeout=10).run()


async def test_typed_counter_state_workflow_returns_done() -> None:
    # ``Context`` comes from the page's first sample; the typed-state sample uses it
    # without importing it.
    from pydantic import BaseModel, Field

    from celery_workflows import Context

    class CounterState(BaseModel):
        count: int = Field(default=0)

    from celery_workflows import Workflow, step
    from celery_workflows.events import (
        StartEvent,
        StopEvent,
    )

    class MyWorkflow(Workflow):
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            # Allows for atomic state updates
            async with ctx.store.edit_state() as ctx_state:
                ctx_state.count += 1

            return StopEvent(result="Done!")

    # Added: run it and look at the typed state.
    handler = MyWorkflow().run()
    assert await handler == "Done!"
    state = await handler.ctx.store.get_state()
    assert isinstance(state, CounterState)
    assert state.count == 1


async def test_maintaining_context_across_runs_sample_fails_on_undefined_w() -> None:
    # The page runs ``w.run(ctx=ctx)`` but never defines ``w`` (its workflow is named
    # ``workflow``): the first run succeeds, the second line raises NameError. Seed 003,
    # a later version of the page, fixes it (see test_example_managing_state_v2.py).
    # MyWorkflow is the page's last definition, the typed-state one.
    from pydantic import BaseModel, Field

    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class CounterState(BaseModel):
        count: int = Field(default=0)

    class MyWorkflow(Workflow):
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as ctx_state:
                ctx_state.count += 1
            return StopEvent(result="Done!")

    workflow = MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler

    # Optional: save the ctx somewhere and restore
    # ctx_dict = ctx.to_dict()
    # ctx = Context.from_dict(workflow, ctx_dict)

    # continue with next run
    with pytest.raises(NameError, match="name 'w' is not defined"):
        handler = w.run(ctx=ctx)  # noqa: F821
        result = await handler

    assert result == "Done!"
    assert (await ctx.store.get_state()).count == 1
