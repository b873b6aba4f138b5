"""Celery project for the latency benchmark: a 3-step workflow and a plain 3-task chain."""

from __future__ import annotations

import os

from celery import Celery

from celery_workflows import CeleryRuntime, Context, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent

BROKER = os.environ.get("CW_BENCH_BROKER", "redis://127.0.0.1:6379/6")
app = Celery("bench_proj", broker=BROKER, backend=BROKER)
app.conf.broker_connection_retry_on_startup = True
runtime = CeleryRuntime(app, database_url=os.environ.get("CW_BENCH_DATABASE"))
runtime.poll_interval = 0.002  # measure the run, not the caller's polling


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


linear = Linear3(runtime=runtime, timeout=None)


@app.task(name="bench.add", acks_late=True)
def add(n: int) -> int:
    """One hop of the plain chain."""
    return n + 1
