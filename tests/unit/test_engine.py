"""The run lifecycle over the in-memory store: attempts, journal, fencing, bad input."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from celery_workflows import Context, Workflow, step
from celery_workflows.context.state_store import DictState
from celery_workflows.errors import ContextSerdeError, FencedOutError, WorkflowRuntimeError
from celery_workflows.events import Event, InputRequiredEvent, StartEvent, StopEvent
from celery_workflows.runtime.engine import Dispatch, Engine
from celery_workflows.runtime.routing import child_id
from celery_workflows.store.memory import InMemoryRunStore


class Recorder:
    """A dispatcher that only records: the test decides when deliveries execute."""

    def __init__(self) -> None:
        self.sent: list[Dispatch] = []

    def dispatch(self, items: Sequence[Dispatch]) -> None:
        self.sent.extend(items)


class Gate:
    """Lets a test hold a step inside its body (a worker that is about to die)."""

    def __init__(self) -> None:
        self.block = True
        self.reached = asyncio.Event()
        self.bodies = 0


GATE = Gate()


class ThreeEdits(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        GATE.bodies += 1
        for name in ("a", "b"):
            async with ctx.store.edit_state() as state:
                state[name] = state.get(name, 0) + 1
        if GATE.block:
            GATE.reached.set()
            await asyncio.Event().wait()  # hangs until the test kills this attempt
        async with ctx.store.edit_state() as state:
            state["c"] = state.get("c", 0) + 1
        return StopEvent(result="done")


def make_engine(lease: float) -> tuple[Engine, Recorder, Any]:
    recorder = Recorder()
    engine = Engine(InMemoryRunStore(), recorder, lease_seconds=lease)
    return engine, recorder, engine.register(ThreeEdits(timeout=None))


async def test_engine_rerun_after_a_dead_attempt_applies_each_edit_once() -> None:
    GATE.block, GATE.bodies, GATE.reached = True, 0, asyncio.Event()
    engine, recorder, binding = make_engine(lease=0.05)
    await engine.start(binding, StartEvent(), run_id="r1", state=DictState(), timeout=None)
    (start,) = recorder.sent
    first = asyncio.create_task(engine.execute(start.delivery_id))
    await asyncio.wait_for(GATE.reached.wait(), 2)
    first.cancel()  # the worker dies after committing edits 0 and 1
    await asyncio.sleep(0.1)  # its lease expires
    GATE.block = False
    await asyncio.wait_for(engine.execute(start.delivery_id), 2)
    run = await engine.store.get_run("r1")
    assert run.status == "completed"
    assert dict(run.state.items()) == {"a": 1, "b": 1, "c": 1}
    assert GATE.bodies == 2


async def test_engine_refuses_an_edit_from_a_superseded_attempt() -> None:
    GATE.block, GATE.bodies, GATE.reached = True, 0, asyncio.Event()
    engine, recorder, binding = make_engine(lease=0.05)
    await engine.start(binding, StartEvent(), run_id="r2", state=DictState(), timeout=None)
    delivery_id = recorder.sent[0].delivery_id
    zombie = await engine.store.claim(delivery_id, lease_seconds=0.01)
    await asyncio.sleep(0.05)
    fresh = await engine.store.claim(delivery_id, lease_seconds=10)
    assert zombie.delivery is not None and fresh.delivery is not None
    assert fresh.delivery.attempt == zombie.delivery.attempt + 1
    with pytest.raises(FencedOutError):
        async with engine.store.locked("r2", zombie.delivery.fence) as txn:
            txn.set_state(DictState(_data={"zombie": True}))
    run = await engine.store.get_run("r2")
    assert "zombie" not in run.state


async def test_engine_drops_a_redelivered_message_of_a_done_delivery() -> None:
    GATE.block = False
    engine, recorder, binding = make_engine(lease=10)
    await engine.start(binding, StartEvent(), run_id="r3", state=DictState(), timeout=None)
    delivery_id = recorder.sent[0].delivery_id
    await engine.execute(delivery_id)
    bodies = GATE.bodies
    await engine.execute(delivery_id)  # the broker delivered the message twice
    assert GATE.bodies == bodies
    run = await engine.store.get_run("r3")
    assert dict(run.state.items()) == {"a": 1, "b": 1, "c": 1}


def test_child_ids_are_deterministic_and_distinct() -> None:
    assert child_id("run:start", 0) == child_id("run:start", 0)
    assert child_id("run:start", 0) != child_id("run:start", 1)
    assert child_id("run:start", 0).startswith("run:")


class NotAnEvent(Workflow):
    @step
    async def work(self, ev: StartEvent) -> StopEvent:
        return "oops"  # type: ignore[return-value]


async def test_a_step_returning_a_non_event_fails_the_run_naming_run_and_step() -> None:
    handler = NotAnEvent().run(run_id="bad-return")
    with pytest.raises(WorkflowRuntimeError) as info:
        await asyncio.wait_for(handler, 5)
    assert "run 'bad-return'" in str(info.value)
    assert "step 'work'" in str(info.value)
    assert "str" in str(info.value)


def test_a_snapshot_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(ContextSerdeError) as info:
        Context.from_dict(ThreeEdits(), {"version": 99, "state": {}})
    assert "version=99" in str(info.value)


class Counting(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("n", 1)
        return StopEvent(result=await ctx.store.get("missing.path"))


async def test_a_missing_state_path_fails_the_step_and_keeps_committed_state() -> None:
    handler = Counting().run()
    with pytest.raises(ValueError, match=r"Path 'missing\.path' not found in state"):
        await asyncio.wait_for(handler, 5)
    assert await handler.ctx.store.get("n") == 1


async def test_a_delivery_of_an_unregistered_workflow_fails_its_run_and_the_worker_goes_on() -> (
    None
):
    GATE.block = False
    engine, recorder, binding = make_engine(lease=10)
    await engine.start(binding, StartEvent(), run_id="r4", state=DictState(), timeout=None)
    other = Engine(engine.store, Recorder())  # a worker that never imported ThreeEdits
    await other.execute(recorder.sent[0].delivery_id)
    run = await engine.store.get_run("r4")
    assert run.status == "failed"
    assert run.error is not None
    assert "run 'r4'" in run.error["message"] and "step 'work'" in run.error["message"]
    assert "ThreeEdits" in run.error["message"]


async def test_a_message_for_an_unknown_delivery_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, recorder, _ = make_engine(lease=10)
    with caplog.at_level(logging.WARNING, logger="celery_workflows.engine"):
        await engine.execute("no-such-run:no-such-delivery")  # logs, does not raise
    assert "no-such-run:no-such-delivery" in caplog.text and "no such delivery" in caplog.text
    assert recorder.sent == []


class Ping(Event):
    pass


class Pong(Event):
    pass


class EditThenCollect(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Ping | Pong | None:
        ctx.send_event(Ping())
        ctx.send_event(Pong())
        return None

    @step
    async def gather(self, ctx: Context, ev: Ping | Pong) -> StopEvent | None:
        async with ctx.store.edit_state() as state:
            state["edits"] = state.get("edits", 0) + 1
        # collect_events re-runs this body once its answer is committed: the edit above
        # must not be applied a second time by that re-run.
        if ctx.collect_events(ev, [Ping, Pong]) is None:
            return None
        return StopEvent(result=await ctx.store.get("edits"))


async def test_an_edit_before_collect_events_is_applied_once_per_delivery() -> None:
    assert await asyncio.wait_for(EditThenCollect().run(), 5) == 2


class Answer(Event):
    text: str


class EditThenWait(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["edits"] = state.get("edits", 0) + 1
        # The answer re-runs this body from the top (as upstream does); the edit above
        # belongs to the invocation the wait suspended and must not be applied again.
        answer = await ctx.wait_for_event(
            Answer, waiter_event=InputRequiredEvent(prefix="name?"), waiter_id="name"
        )
        return StopEvent(result=(await ctx.store.get("edits"), answer.text))


async def test_an_edit_before_wait_for_event_is_applied_once() -> None:
    handler = EditThenWait(timeout=10).run()

    async def answer_when_asked() -> None:
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                handler.ctx.send_event(Answer(text="ada"))

    await asyncio.wait_for(answer_when_asked(), 5)
    assert tuple(await asyncio.wait_for(handler, 5)) == (1, "ada")


async def test_the_in_process_runtime_keeps_no_state_of_finished_runs() -> None:
    from celery_workflows.runtime.local import LocalRuntime

    runtime = LocalRuntime()
    workflow = EditThenCollect(runtime=runtime, timeout=30)
    for _ in range(3):
        assert await asyncio.wait_for(workflow.run(), 5) == 2
    await asyncio.sleep(0)  # let the finished tasks run their done-callbacks
    assert runtime.dispatcher.tasks == {}
    assert runtime.dispatcher._limits == {}
    assert runtime._timers == {}
    assert runtime._workflow_of == {}
