"""Samples of the LlamaIndex "Maintaining state" page, seed 002.

The page imports everything from ``llama_index.core.workflow``; those import lines are
replaced by the matching ``celery_workflows`` ones (``Context``, ``Workflow`` and ``step``
from the package, the events from ``celery_workflows.events``). The code is otherwise
verbatim.
"""

import re

import pytest


async def test_stateful_flow_loads_data_once_and_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The page shows ``step_two`` as a separate snippet, indented as a method: it is the
    # third step of StatefulFlow, and is placed in the class here.
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import Event, StartEvent, StopEvent

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

    w = StatefulFlow(timeout=10, verbose=False)
    result = await w.run(query="Some query")
    print(result)

    assert capsys.readouterr().out == "Need to load data\nData is  [1, 2, 3]\n[1, 2, 3]\n"


def test_step_two_snippet_alone_needs_a_workflow_class() -> None:
    # Run literally, the ``step_two`` snippet decorates a free function, which @step
    # refuses without ``workflow=``.
    from celery_workflows import Context, step
    from celery_workflows.errors import WorkflowValidationError
    from celery_workflows.events import Event, StopEvent

    class StepTwoEvent(Event):
        query: str

    with pytest.raises(WorkflowValidationError, match="please pass a workflow class"):

        @step
        async def step_two(self, ctx: Context, ev: StepTwoEvent) -> StopEvent:
            # do something with the data
            print("Data is ", await ctx.store.get("some_database"))

            return StopEvent(result=await ctx.store.get("some_database"))


async def test_edit_state_sets_a_key_atomically() -> None:
    # The page shows only the ``async with`` block; the step around it is added.
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class ConcurrentFlow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state["some_key"] = "some_value"
            return StopEvent(result=await ctx.store.get("some_key"))

    assert await ConcurrentFlow().run() == "some_value"


async def test_typed_state_with_custom_serializer_prints_the_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from typing import Union

    from pydantic import BaseModel, Field, field_serializer, field_validator

    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    # This is a random object that we want to use in our state
    class MyRandomObject:
        def __init__(self, name: str = "default"):
            self.name = name

    # This is our state model
    # NOTE: all fields must have defaults
    class MyState(BaseModel):
        model_config = {"arbitrary_types_allowed": True}
        my_obj: MyRandomObject = Field(default_factory=MyRandomObject)
        some_key: str = Field(default="some_value")

        # This is optional, but can be useful if you want to control the serialization of your state!

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

    w = MyStatefulFlow(timeout=10, verbose=False)

    ctx = Context(w)
    result = await w.run(ctx=ctx)
    state = await ctx.store.get_state()
    print(state)

    assert result == "Done!"
    assert isinstance(state, MyState)
    assert state.my_obj.name == "new_name"
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"my_obj=<.*MyRandomObject object at 0x[0-9a-f]+> some_key='some_value'\n", out
    )
