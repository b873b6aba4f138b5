"""A Celery project for the integration and crash tests (imported by real workers).

Configured by environment variables so the test process and its worker processes agree:
CW_TEST_BROKER (Redis URL) and CW_TEST_DATABASE (SQLAlchemy URL).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from celery import Celery
from pydantic import BaseModel

from celery_workflows import CeleryRuntime, Context, Workflow, catch_error, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed

app = Celery("cw_proj", broker=os.environ.get("CW_TEST_BROKER", "redis://127.0.0.1:6379/5"))
app.conf.broker_connection_retry_on_startup = True
app.conf.imports = ["cw_seeds"]  # the seed samples' workflows, for the workers
# Short timings keep the crash tests fast; CW_TEST_DEFAULT_TIMINGS=1 measures the defaults.
timings = (
    {}
    if os.environ.get("CW_TEST_DEFAULT_TIMINGS")
    else {
        "lease_seconds": float(os.environ.get("CW_TEST_LEASE", "4")),
        "heartbeat_seconds": 1.0,
        "sweep_interval": 0.5,
        "stale_after": 3.0,
    }
)
runtime = CeleryRuntime(app, database_url=os.environ.get("CW_TEST_DATABASE"), **timings)


class Counter(Workflow):
    """One step, one edit: the DESIGN's first example."""

    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["count"] = state.get("count", 0) + 1
            count = state["count"]
        return StopEvent(result=count)


class Tick(Event):
    n: int


class Tock(Event):
    n: int


class Progress(Event):
    message: str


class FanOut(Workflow):
    """Fan-out to parallel steps that edit one row, fan-in through list[E]."""

    @step
    async def split(self, ev: StartEvent) -> list[Tick]:
        return [Tick(n=i) for i in range(int(ev.get("n", 10)))]

    @step(num_workers=4)
    async def add(self, ctx: Context, ev: Tick) -> Tock:
        async with ctx.store.edit_state() as state:
            state["total"] = state.get("total", 0) + ev.n
            state["edits"] = state.get("edits", 0) + 1
        ctx.write_event_to_stream(Progress(message=f"tick {ev.n}"))
        await asyncio.sleep(float(os.environ.get("CW_TEST_ADD_SLEEP", "0")))
        return Tock(n=ev.n)

    @step
    async def gather(self, ctx: Context, evs: list[Tock]) -> StopEvent:
        return StopEvent(result={"count": len(evs), "total": await ctx.store.get("total")})


class Ask(Workflow):
    """Human in the loop: the run waits in the database, holding no worker."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="name?")
        )
        return StopEvent(result=f"hello {answer.response}")


class TimedAsk(Workflow):
    """An edit, then a wait that times out: the step runs again and ends the run."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["asked"] = state.get("asked", 0) + 1
        try:
            answer = await ctx.wait_for_event(HumanResponseEvent, timeout=float(ev.get("wait", 1)))
        except TimeoutError:
            return StopEvent(result="timed out")
        return StopEvent(result=f"hello {answer.response}")


class Tally(BaseModel):
    steps: int = 0
    hold: str = ""


def hold_here(ctx: Context[Tally], where: str) -> None:
    """Crash tests: announce the pid and hang (blocking) until the worker is killed.

    Only the first attempt holds: the marker file says it already happened."""
    flag = Path(os.environ["CW_TEST_HOLD_DIR"]) / f"{ctx.run_id}.{where}"
    if flag.exists():
        return
    flag.write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


class Slow(Workflow):
    """Three steps, one edit each; ``run(hold="before"|"after")`` parks the middle step
    before or after its edit committed, for a crash test to kill its worker there."""

    @step
    async def first(self, ctx: Context[Tally], ev: StartEvent) -> Tick:
        async with ctx.store.edit_state() as state:
            state.steps += 1
            state.hold = str(ev.get("hold", ""))
        return Tick(n=1)

    @step
    async def middle(self, ctx: Context[Tally], ev: Tick) -> Tock:
        hold = await ctx.store.get("hold")
        if hold == "before":
            hold_here(ctx, hold)
        async with ctx.store.edit_state() as state:
            state.steps += 1
        if hold == "after":
            hold_here(ctx, hold)
        await asyncio.sleep(float(os.environ.get("CW_TEST_STEP_SLEEP", "0")))
        return Tock(n=2)

    @step
    async def last(self, ctx: Context[Tally], ev: Tock) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.steps += 1
        return StopEvent(result="done")


class Job(Event):
    n: int


class Limited(Workflow):
    """Six jobs for a step with num_workers=1: never two at once, cluster-wide."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Job | None:
        for i in range(6):
            ctx.send_event(Job(n=i))
        return None

    @step(num_workers=1)
    async def job(self, ctx: Context, ev: Job) -> StopEvent | None:
        async with ctx.store.edit_state() as state:
            state["running"] = state.get("running", 0) + 1
            state["peak"] = max(state.get("peak", 0), state["running"])
        await asyncio.sleep(0.2)
        async with ctx.store.edit_state() as state:
            state["running"] -= 1
            state["done"] = state.get("done", 0) + 1
            finished = state["done"] == 6
        return StopEvent(result=state["peak"]) if finished else None


class Sleepy(Workflow):
    """A step that outlives the workflow's timeout."""

    @step
    async def nap(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(30)
        return StopEvent(result="woke")


class Blocking(Workflow):
    """A step that blocks its event loop longer than the lease (CPU work, a sync call)."""

    @step
    async def block(self, ctx: Context, ev: StartEvent) -> StopEvent:
        bodies = Path(os.environ["CW_TEST_HOLD_DIR"]) / f"{ctx.run_id}.bodies"
        with bodies.open("a") as out:
            out.write("x")
        time.sleep(float(ev.get("seconds", 6)))
        return StopEvent(result="ok")


class Poison(Workflow):
    """A step that kills its own worker process, every time."""

    @step
    async def die(self, ev: StartEvent) -> StopEvent:
        os.kill(os.getpid(), signal.SIGKILL)
        return StopEvent(result="unreachable")


class Left(Event):
    side: str


class Right(Event):
    side: str


class Features(Workflow):
    """Retries with a delay, @catch_error, a two-parameter join and collect_events."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Left | Right | None:
        ctx.send_event(Left(side="l"))
        ctx.send_event(Right(side="r"))
        return None

    @step(retry_policy=retry_policy(wait=wait_fixed(0.3), stop=stop_after_attempt(3)))
    async def flaky(self, ctx: Context, ev: Left) -> Tick:
        async with ctx.store.edit_state() as state:
            state["tries"] = state.get("tries", 0) + 1
        if ctx.retry_info().retry_number < 2:
            raise ConnectionError("try again")
        return Tick(n=ctx.retry_info().retry_number)

    @step
    async def broken(self, ev: Right) -> Tock:
        raise ValueError("broken for good")

    @catch_error(for_steps=["broken"])
    async def rescue(self, ev: StepFailedEvent) -> Tock:
        return Tock(n=-1)

    @step
    async def join(self, ctx: Context, tick: Tick, tock: Tock) -> StopEvent:
        return StopEvent(
            result={"tick": tick.n, "tock": tock.n, "tries": await ctx.store.get("tries")}
        )


class Kept(Event):
    pass


class KeepPosted(Workflow):
    """Keeps what a client posted in untyped state; a second step reads it back, so a
    worker decodes it (a class name in the posted data must not make it import anything)."""

    @step
    async def keep(self, ctx: Context, ev: StartEvent) -> Kept:
        await ctx.store.set("posted", ev.get("posted"))
        return Kept()

    @step
    async def describe(self, ctx: Context, ev: Kept) -> StopEvent:
        value = await ctx.store.get("posted")
        exception = getattr(value, "exception", None)
        return StopEvent(result={"value": type(value).__name__, "exception": repr(exception)})


class Ping(Event):
    n: int


class Broadcast(Workflow):
    """A step sends three Pings and goes on: they must be counted while it still runs.
    ``run(hold=True)`` parks it after they were counted, for a crash test to kill it."""

    @step
    async def send(self, ctx: Context, ev: StartEvent) -> Ping | StopEvent:
        for n in range(3):
            ctx.send_event(Ping(n=n))
        # The sends are committed at the next await; then the counter counts them.
        for _ in range(600):
            if await ctx.store.get("pings", default=0) >= 3:
                break
            await asyncio.sleep(0.05)
        if ev.get("hold"):
            hold_here(ctx, "sent")
        return StopEvent(result=await ctx.store.get("pings", default=0))

    @step
    async def count(self, ctx: Context, ev: Ping) -> None:
        async with ctx.store.edit_state() as state:
            state["pings"] = state.get("pings", 0) + 1
            state["seen"] = [*state.get("seen", []), ev.n]


counter = Counter(runtime=runtime, timeout=60)
broadcast = Broadcast(runtime=runtime, timeout=120)
keep_posted = KeepPosted(runtime=runtime, timeout=60)
poison = Poison(runtime=runtime, timeout=120)
features = Features(runtime=runtime, timeout=60)
blocking = Blocking(runtime=runtime, timeout=60)
sleepy = Sleepy(runtime=runtime, timeout=1.5)
limited = Limited(runtime=runtime, timeout=120)
fan_out = FanOut(runtime=runtime, timeout=120)
ask = Ask(runtime=runtime, timeout=120)
timed_ask = TimedAsk(runtime=runtime, timeout=120)
slow = Slow(runtime=runtime, timeout=300)
