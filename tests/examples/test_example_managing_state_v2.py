"""Samples of the later "Managing State" page, seed 003.

Seed 003 is a text scrape that lost the code blocks' line breaks; the samples below are
that code with its layout restored. Bare methods get the class around them (marked), and
the tests add runs and asserts where the page only defines a workflow.
"""

from pydantic import BaseModel, Field


# The page's state model, at module level as on the page: a context carried into a later
# run (or restored from a dict) finds its state class again by module and name.
class CounterState(BaseModel):
    count: int = Field(default=0)


async def test_my_workflow_counts_and_returns_the_count() -> None:
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
            current_count = await ctx.store.get("count", default=0)
            current_count += 1
            await ctx.store.set("count", current_count)
            return StopEvent(result=current_count)

    # Added: a second run on the same context counts on.
    workflow = MyWorkflow()
    handler = workflow.run()
    assert await handler == 1
    assert await workflow.run(ctx=handler.ctx) == 2


async def test_locking_the_state_counts_atomically() -> None:
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):  # added around the page's bare method
        @step
        async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                current_count = state.get("count", 0)
                state["count"] = current_count + 1
                result = state["count"]
            return StopEvent(result=result)

    assert await MyWorkflow().run() == 1


async def test_typed_counter_state_workflow_returns_done() -> None:
    from pydantic import BaseModel, Field

    class CounterState(BaseModel):
        count: int = Field(default=0)

    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import (
        StartEvent,
        StopEvent,
    )

    class MyWorkflow(Workflow):
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            # Allows for atomic state updates
            async with ctx.store.edit_state() as state:
                state.count += 1

            return StopEvent(result="Done!")

    handler = MyWorkflow().run()
    assert await handler == "Done!"
    assert (await handler.ctx.store.get_state()).count == 1


async def test_typed_state_one_field_at_a_time() -> None:
    from pydantic import BaseModel, Field

    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class CounterState(BaseModel):
        count: int = Field(default=0)

    class MyWorkflow(Workflow):  # added around the page's bare method
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            current = await ctx.store.get("count")
            await ctx.store.set("count", current + 1)
            state = await ctx.store.get_state()
            return StopEvent(result=state.count)

    assert await MyWorkflow().run() == 1


async def test_maintaining_context_across_runs_keeps_the_state() -> None:
    # MyWorkflow is the page's typed-state workflow. Its CounterState is the module-level
    # one: a run continued from a finished context reloads the state model by its
    # module path, which a class local to this function does not have.
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.count += 1
            return StopEvent(result="Done!")

    workflow = MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler

    # Optional: save the ctx somewhere and restore
    # ctx_dict = ctx.to_dict()
    # ctx = Context.from_dict(workflow, ctx_dict)

    # continue with next run
    handler = workflow.run(ctx=ctx)
    result = await handler

    assert result == "Done!"
    assert (await ctx.store.get_state()).count == 2


async def test_maintaining_context_across_runs_through_a_saved_dict() -> None:
    # The same sample with its optional save/restore lines uncommented (CounterState:
    # module level, as above).
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.count += 1
            return StopEvent(result="Done!")

    workflow = MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler

    # Optional: save the ctx somewhere and restore
    ctx_dict = ctx.to_dict()
    ctx = Context.from_dict(workflow, ctx_dict)

    # continue with next run
    handler = workflow.run(ctx=ctx)
    result = await handler

    assert result == "Done!"
    assert (await ctx.store.get_state()).count == 2
