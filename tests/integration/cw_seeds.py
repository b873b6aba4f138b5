"""The seed documentation samples as a worker-importable module, for the Celery runtime.

Each class is a seed's step code with its import lines changed, under a distinct class
name (one module holds several pages' ``MyWorkflow``), comments dropped and, where a
page shows a bare step method, the class around it added; the workflows get the
integration project's runtime (``cw_proj``). The page texts themselves run in-process
in ``tests/examples``. Samples that are in-process by nature (a
counter kept on the workflow instance, seed 004's first sample) are not here: on Celery
that instance lives in each worker process.
"""

from __future__ import annotations

from typing import Union

from cw_proj import runtime
from pydantic import BaseModel, Field, field_serializer, field_validator

from celery_workflows import Context, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent

# --- seed 003 "Managing State": get/set -------------------------------------------------


class GetSetWorkflow(Workflow):
    @step
    async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
        current_count = await ctx.store.get("count", default=0)
        current_count += 1
        await ctx.store.set("count", current_count)
        return StopEvent(result=current_count)


# --- seed 003 "Locking the State" ---------------------------------------------------------


class LockingWorkflow(Workflow):
    @step
    async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            current_count = state.get("count", 0)
            state["count"] = current_count + 1
            result = state["count"]
        return StopEvent(result=result)


# --- seed 003 "Adding Typed State" ----------------------------------------------------------


class CounterState(BaseModel):
    count: int = Field(default=0)


class TypedWorkflow(Workflow):
    @step
    async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
        # Allows for atomic state updates
        async with ctx.store.edit_state() as state:
            state.count += 1

        return StopEvent(result="Done!")


# --- seed 002 "Maintaining state": the setup loop -----------------------------------------


class SetupEvent(Event):
    query: str


class StepTwoEvent(Event):
    query: str


class StatefulFlow(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> SetupEvent | StepTwoEvent:
        db = await ctx.store.get("some_database", default=None)
        if db is None:
            print("Need to load data")
            return SetupEvent(query=ev.query)

        # do something with the query
        return StepTwoEvent(query=ev.query)

    @step
    async def setup(self, ctx: Context, ev: SetupEvent) -> StartEvent:
        # load data
        await ctx.store.set("some_database", [1, 2, 3])
        return StartEvent(query=ev.query)

    @step
    async def step_two(self, ctx: Context, ev: StepTwoEvent) -> StopEvent:
        # do something with the data
        print("Data is ", await ctx.store.get("some_database"))

        return StopEvent(result=await ctx.store.get("some_database"))


# --- seed 002 "Adding Typed State": custom (de)serialization ----------------------------


class MyRandomObject:
    def __init__(self, name: str = "default"):
        self.name = name


class MyState(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    my_obj: MyRandomObject = Field(default_factory=MyRandomObject)
    some_key: str = Field(default="some_value")

    @field_serializer("my_obj", when_used="always")
    def serialize_my_obj(self, my_obj: MyRandomObject) -> str:
        return my_obj.name

    @field_validator("my_obj", mode="before")
    @classmethod
    def deserialize_my_obj(cls, v: Union[str, MyRandomObject]) -> MyRandomObject:
        if isinstance(v, MyRandomObject):
            return v
        if isinstance(v, str):
            return MyRandomObject(v)

        raise ValueError(f"Invalid type for my_obj: {type(v)}")


class MyStatefulFlow(Workflow):
    @step
    async def start(self, ctx: Context[MyState], ev: StartEvent) -> StopEvent:
        # Allows for atomic state updates
        async with ctx.store.edit_state() as state:
            state.my_obj.name = "new_name"

        # Can also access fields directly if needed
        name = await ctx.store.get("my_obj.name")

        return StopEvent(result="Done!")


# --- seed 004 "Storing data in the context object" ----------------------------------------


class CountingWorkflow(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            counter = state.get("counter", 1)
            retval = StopEvent(result=f"The step ran {counter} times")
            state["counter"] = counter + 1
        return retval


get_set = GetSetWorkflow(runtime=runtime, timeout=60)
locking = LockingWorkflow(runtime=runtime, timeout=60)
typed = TypedWorkflow(runtime=runtime, timeout=60)
stateful = StatefulFlow(runtime=runtime, timeout=60)
my_stateful = MyStatefulFlow(runtime=runtime, timeout=60)
counting = CountingWorkflow(runtime=runtime, timeout=60)
