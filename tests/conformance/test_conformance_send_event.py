"""``ctx.send_event`` delivers as upstream does: at once, while the sender still runs, and
also when the sender then fails or waits (DESIGN invariant 9)."""

from __future__ import annotations

import asyncio
import warnings
from types import SimpleNamespace
from typing import Any

from basics import basics


async def test_a_retried_sender_converges_on_what_its_sends_counted(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class CountEvent(Event):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = impl.retry_policy.ConstantDelayRetryPolicy(maximum_attempts=6, delay=0.05)

    class Converge(impl.Workflow):
        @step(retry_policy=policy)
        async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent | CountEvent:
            async with ctx.store.edit_state() as state:
                state["tries"] = state.get("tries", 0) + 1
            ctx.send_event(CountEvent())
            # The counter has counted this attempt's event before the attempt decides.
            for _ in range(200):
                if await ctx.store.get("counted", default=0) >= await ctx.store.get("tries"):
                    break
                await asyncio.sleep(0.01)
            if await ctx.store.get("counted", default=0) < 3:
                raise ValueError("not yet")
            return StopEvent(result=await ctx.store.get("tries"))

        @step
        async def count(self, ctx: Context, ev: CountEvent) -> None:
            async with ctx.store.edit_state() as state:
                state["counted"] = state.get("counted", 0) + 1

    # Each retry is a new run of the step: its edit and its send take effect again.
    assert await bounded(Converge(timeout=10).run(), 10) == 3


async def test_events_sent_before_a_failure_are_delivered(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Note(Event):
        text: str

    class Fails(impl.Workflow):
        @step
        async def sender(self, ctx: Context, ev: StartEvent) -> Note | None:
            ctx.send_event(Note(text="sent before the failure"))
            await asyncio.sleep(0)
            raise RuntimeError("the sender fails")

        @step
        async def receiver(self, ctx: Context, ev: Note) -> StopEvent | None:
            await ctx.store.set("received", ev.text)
            return None

        @impl.catch_error
        async def recover(self, ctx: Context, ev: impl.StepFailedEvent) -> StopEvent:
            for _ in range(200):
                received = await ctx.store.get("received", default=None)
                if received is not None:
                    return StopEvent(result=received)
                await asyncio.sleep(0.01)
            return StopEvent(result="never received")

    assert await bounded(Fails(timeout=10).run(), 10) == "sent before the failure"


async def test_an_event_sent_reaches_its_step_while_the_sender_still_runs(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Ping(Event):
        pass

    class Pong(Event):
        pass

    class Sender(impl.Workflow):
        @step
        async def sender(self, ctx: Context, ev: StartEvent) -> Ping | StopEvent:
            ctx.send_event(Ping())
            # Upstream's sender sees the reply while it runs; a buffered send never would.
            for _ in range(500):
                if await ctx.store.get("ponged", default=False):
                    return StopEvent(result="pong seen while running")
                await asyncio.sleep(0.01)
            return StopEvent(result="no pong")

        @step
        async def ponger(self, ctx: Context, ev: Ping) -> None:
            await ctx.store.set("ponged", True)

    assert await bounded(Sender(timeout=10).run(), 10) == "pong seen while running"


async def test_events_sent_before_a_wait_are_delivered_once(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Tick(Event):
        pass

    class Go(Event):
        pass

    class Waits(impl.Workflow):
        @step
        async def waiter(self, ctx: Context, ev: StartEvent) -> Tick | StopEvent:
            ctx.send_event(Tick())
            await ctx.wait_for_event(Go)
            return StopEvent(result=await ctx.store.get("ticks", default=0))

        @step
        async def ticker(self, ctx: Context, ev: Tick) -> None:
            async with ctx.store.edit_state() as state:
                state["ticks"] = state.get("ticks", 0) + 1
            ctx.send_event(Go())

    # On a durable runtime the waiting step runs again from the top when Go arrives: its
    # send before the wait is journaled, so Tick is delivered once, not twice.
    assert await bounded(Waits(timeout=10).run(), 10) == 1
