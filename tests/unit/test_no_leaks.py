"""A long-lived caller running workflows in-process does not grow (issue 11, item 7).

Workflow instances, handlers and contexts are collectable once their runs ended, however
they ended (completed, failed, cancelled, timed out, after a wait or a delayed retry);
the in-memory store forgets finished runs nobody holds beyond the newest
``DEFAULT_KEEP_FINISHED``, so memory stays flat over thousands of runs.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from celery_workflows import Context, Workflow, step
from celery_workflows.errors import RunNotFoundError, WorkflowCancelledByUser, WorkflowTimeoutError
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from celery_workflows.runtime import local
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.runtime.retention import DEFAULT_KEEP_FINISHED


class Hop(Event):
    n: int


class TwoHops(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Hop:
        await ctx.store.set("n", ev.get("n"))
        ctx.write_event_to_stream(Hop(n=ev.get("n")))
        return Hop(n=ev.get("n"))

    @step
    async def second(self, ev: Hop) -> StopEvent:
        return StopEvent(result=ev.n)


class Asks(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="?"), timeout=3600
        )
        return StopEvent(result=answer.response)


class Flaky(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(3600), stop=stop_after_attempt(3)))
    async def fail(self, ev: StartEvent) -> StopEvent:
        raise ValueError("again later")


class Broken(Workflow):
    @step
    async def fail(self, ev: StartEvent) -> StopEvent:
        raise ValueError("broken")


class Stuck(Workflow):
    @step
    async def hang(self, ev: StartEvent) -> StopEvent:
        # Not asyncio.sleep(): a cancelled timer keeps the step's contextvars (and so its
        # Context) until asyncio drops cancelled timers, upstream's runs as well as ours.
        await asyncio.Event().wait()
        return StopEvent()


async def completed(n: int, runtime: LocalRuntime) -> tuple[Any, ...]:
    workflow = TwoHops(timeout=60, runtime=runtime)
    handler = workflow.run(n=n)
    assert [type(e).__name__ async for e in handler.stream_events()][-1] == "StopEvent"
    assert await handler == n
    return workflow, handler, handler.ctx


async def answered(n: int, runtime: LocalRuntime) -> tuple[Any, ...]:
    workflow = Asks(timeout=None, runtime=runtime)
    handler = workflow.run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            handler.ctx.send_event(HumanResponseEvent(response=str(n)))
    assert await handler == str(n)
    return workflow, handler, handler.ctx


async def cancelled_while_retrying(n: int, runtime: LocalRuntime) -> tuple[Any, ...]:
    workflow = Flaky(timeout=None, runtime=runtime)
    handler = workflow.run()
    await asyncio.sleep(0.05)  # the first attempt failed: its retry waits for an hour
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler
    return workflow, handler, handler.ctx


async def failed(n: int, runtime: LocalRuntime) -> tuple[Any, ...]:
    workflow = Broken(timeout=60, runtime=runtime)
    handler = workflow.run()
    with pytest.raises(ValueError, match="broken"):
        await handler
    return workflow, handler, handler.ctx


async def timed_out(n: int, runtime: LocalRuntime) -> tuple[Any, ...]:
    workflow = Stuck(timeout=0.05, runtime=runtime)
    handler = workflow.run()
    with pytest.raises(WorkflowTimeoutError):
        await handler
    return workflow, handler, handler.ctx


@pytest.mark.parametrize(
    "ending", [completed, answered, cancelled_while_retrying, failed, timed_out]
)
async def test_nothing_of_a_finished_run_stays_alive(
    ending: Callable[[int, LocalRuntime], Awaitable[tuple[Any, ...]]],
) -> None:
    # keep_finished=0: the in-memory store forgets a run as soon as it ended and nothing
    # refers to it (it keeps the newest 1,000 by default, a failed one with its error).
    runtime = LocalRuntime(keep_finished=0)
    refs = []
    for n in range(20):
        refs.extend(weakref.ref(obj) for obj in await ending(n, runtime))
    for _ in range(3):  # a stream left after its StopEvent is closed by a loop callback
        gc.collect()
        await asyncio.sleep(0)
    gc.collect()
    alive = [type(r()).__name__ for r in refs if r() is not None]
    assert alive == []


async def test_a_finished_run_is_found_again_while_its_workflow_lives() -> None:
    workflow = TwoHops(timeout=60)
    run_id = (handler := workflow.run(n=4)).run_id
    assert await handler == 4
    del handler
    gc.collect()
    again = local.default_runtime().get_handler(run_id)
    assert again.is_done()
    assert await again == 4
    assert await again.ctx.store.get("n") == 4


async def test_the_newest_finished_runs_are_kept_for_get_handler() -> None:
    workflow = TwoHops(timeout=60)
    ids = []
    for n in range(DEFAULT_KEEP_FINISHED + 5):
        handler = workflow.run(n=n)
        ids.append(handler.run_id)
        await handler
    del handler
    await asyncio.sleep(0)
    runtime = local.default_runtime()
    assert await runtime.get_handler(ids[-DEFAULT_KEEP_FINISHED]) == len(ids) - (
        DEFAULT_KEEP_FINISHED
    )
    with pytest.raises(RunNotFoundError):
        runtime.get_handler(ids[0])


async def test_ten_thousand_in_process_runs_do_not_grow() -> None:
    async def batch(count: int) -> None:
        for n in range(count):
            assert await TwoHops(timeout=60).run(n=n) == n
        await asyncio.sleep(0)
        gc.collect()

    # tracemalloc sees only what is allocated after it started: on from the first run.
    tracemalloc.start()
    try:
        await batch(DEFAULT_KEEP_FINISHED + 500)  # fills the window of kept finished runs
        traced = [tracemalloc.get_traced_memory()[0]]
        for _ in range(3):
            await batch(1000)
            traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    objects = [len(gc.get_objects())]
    for _ in range(5):
        await batch(1000)
        objects.append(len(gc.get_objects()))
    # 9,500 runs after the warm-up: traced memory stays within 200 KB of the warm level
    # (one kept run weighs about 9 KB) and tracked objects within a few hundred.
    assert max(traced) - traced[0] < 200_000, traced
    assert max(objects) - objects[0] < 500, objects


async def test_a_released_run_stays_readable_through_its_handler() -> None:
    runtime = LocalRuntime(keep_finished=0)
    workflow = TwoHops(timeout=60, runtime=runtime)
    handler = workflow.run(n=7)
    run_id = handler.run_id
    assert await handler == 7
    assert await workflow.run(n=8) == 8  # the first run is released now
    gc.collect()
    assert await handler.ctx.store.get("n") == 7
    assert handler.ctx.to_dict()["is_running"] is False
    assert await runtime.get_handler(run_id) == 7
    again = workflow.run(ctx=handler.ctx, n=9)  # a finished context: a new run, same state
    assert await again == 9
    del handler, again
    gc.collect()
    with pytest.raises(RunNotFoundError):
        runtime.get_handler(run_id)


class LeavesATimer(Workflow):
    """A step that leaves a timer behind: the timer keeps a copy of the step's context
    variables, which must not keep the run's Context (and its workflow) alive."""

    handles: list[asyncio.TimerHandle] = []

    @step
    async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
        assert Context.get_step_context() is ctx
        self.handles.append(asyncio.get_running_loop().call_later(3600, lambda: None))
        return StopEvent(result="done")


@pytest.mark.parametrize("how", ["run", "test runner"])
async def test_a_timer_left_by_a_step_does_not_keep_its_workflow(how: str) -> None:
    from celery_workflows.testing import WorkflowTestRunner

    refs: list[weakref.ReferenceType[Workflow]] = []
    try:
        for _ in range(5):
            workflow = LeavesATimer(timeout=10)
            refs.append(weakref.ref(workflow))
            if how == "run":
                assert await workflow.run() == "done"
            else:
                # Its stream reader is closed when the stream ends, not a loop turn later.
                assert (await WorkflowTestRunner(workflow).run()).result == "done"
            del workflow
        gc.collect()
        assert [r() for r in refs] == [None] * 5
    finally:
        for handle in LeavesATimer.handles:
            handle.cancel()
        LeavesATimer.handles.clear()
