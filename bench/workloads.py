"""The benchmark's workflows, with no runtime bound (each figure binds its own).

``Linear3``: three steps, one ``edit_state`` each. ``FanOut``: one step returns N events,
a ``num_workers=4`` step handles each with one ``edit_state``, a ``list[E]`` step joins.
"""

from __future__ import annotations

from celery_workflows import Context, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent


class One(Event):
    pass


class Two(Event):
    pass


class Linear3(Workflow):
    """Three steps, one edit_state each."""

    @step
    async def first(self, ctx: Context, ev: StartEvent) -> One:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return One()

    @step
    async def second(self, ctx: Context, ev: One) -> Two:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return Two()

    @step
    async def third(self, ctx: Context, ev: Two) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return StopEvent(result=state["n"])


class Item(Event):
    i: int


class Handled(Event):
    i: int


class FanOut(Workflow):
    """``split`` emits ``n`` Items; ``handle`` (4 at a time) edits state once per Item;
    ``gather`` receives every Handled at once."""

    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(int(ev.get("n")))]

    @step(num_workers=4)
    async def handle(self, ctx: Context, ev: Item) -> Handled:
        async with ctx.store.edit_state() as state:
            state["handled"] = state.get("handled", 0) + 1
        return Handled(i=ev.i)

    @step
    async def gather(self, evs: list[Handled]) -> StopEvent:
        return StopEvent(result=len(evs))
