"""A wait that times out after an earlier wait was answered re-runs the step with that
answer (the timeout delivery carries the answers of the waits before it)."""

from __future__ import annotations

import asyncio

from celery_workflows import Context, Workflow, step
from celery_workflows.events import Event, HumanResponseEvent, StartEvent, StopEvent


class Second(Event):
    pass


class TwoWaits(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        first = await ctx.wait_for_event(HumanResponseEvent, waiter_id="first")
        try:
            await ctx.wait_for_event(Second, waiter_id="second", timeout=0.2)
        except TimeoutError:
            return StopEvent(result=f"{first.response}, then timed out")
        return StopEvent(result="both")


async def test_a_second_wait_timing_out_keeps_the_first_answer() -> None:
    handler = TwoWaits(timeout=10).run()

    async def answer() -> None:
        async for ev in handler.stream_events(expose_internal=True):
            if type(ev).__name__ == "StepStateChanged" and ev.step_state.value == "not_running":
                handler.ctx.send_event(HumanResponseEvent(response="ada"))
                return

    await asyncio.wait_for(answer(), 10)
    assert await asyncio.wait_for(handler, 10) == "ada, then timed out"
