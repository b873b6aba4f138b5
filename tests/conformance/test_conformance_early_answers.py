"""Answers that come before their ``wait_for_event``, and runs resumed after a cancel.

A step is registered as a waiter when its invocation ends, so an answer can come first:
sent right after ``run()``, or by a caller answering the ``InputRequiredEvent`` the step
streamed just before its wait. Such an answer is kept for the wait. After
``cancel_run()``, as upstream, the handler's ``exception()`` is set and the run's snapshot
keeps ``is_running`` and its work, so a run built from it goes on.

Event classes are defined per implementation inside the tests and published on this
module for the serializer (``JsonSerializer`` names a class by module and name).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from snapshot_helpers import as_json, publish


def exception_of(handler: Any) -> BaseException | None:
    """``handler.exception()``, deprecated upstream (and here): it warns once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        error: BaseException | None = handler.exception()
    return error


# --- answers before their wait --------------------------------------------------------


async def test_an_answer_sent_right_after_run_reaches_a_step_that_waits_at_once(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Answer(impl.Event):
        text: str

    class Prompt(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(Answer, timeout=10)
            return StopEvent(result=answer.text)

    handler = Prompt(timeout=10).run()
    handler.ctx.send_event(Answer(text="right away"))
    assert await bounded(handler) == "right away"


def two_askers(impl: SimpleNamespace, pause: float = 0.0) -> Any:
    """Two steps that each stream a request and wait for the HumanResponseEvent carrying
    their name; a third collects both answers. ``pause``: between request and wait."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    Event, InputRequiredEvent = impl.Event, impl.InputRequiredEvent
    HumanResponseEvent = impl.HumanResponseEvent

    class First(Event):
        pass

    class Second(Event):
        pass

    class Answered(Event):
        text: str

    async def ask(ctx: Any, name: str) -> Any:
        ctx.write_event_to_stream(InputRequiredEvent(prefix=name))
        await asyncio.sleep(pause)
        reply = await ctx.wait_for_event(HumanResponseEvent, requirements={"asker": name})
        return Answered(text=reply.response)

    class Survey(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> First | Second | None:
            ctx.send_event(First())
            ctx.send_event(Second())
            return None

        @step
        async def first(self, ctx: Context, ev: First) -> Answered:
            answered: Answered = await ask(ctx, "first")
            return answered

        @step
        async def second(self, ctx: Context, ev: Second) -> Answered:
            answered: Answered = await ask(ctx, "second")
            return answered

        @step
        async def gather(self, ctx: Context, ev: Answered) -> StopEvent | None:
            both = ctx.collect_events(ev, [Answered, Answered])
            if both is None:
                return None
            return StopEvent(result=sorted(e.text for e in both))

    return Survey(timeout=10)


async def answer_each_request(impl: SimpleNamespace, handler: Any) -> None:
    """Answer every InputRequiredEvent of the stream as soon as it is read."""
    async for ev in handler.stream_events():
        if isinstance(ev, impl.InputRequiredEvent):
            reply = impl.HumanResponseEvent(response=f"{ev.prefix}!", asker=ev.prefix)
            handler.ctx.send_event(reply)


async def test_answers_to_waits_announced_on_the_stream_reach_their_steps(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = two_askers(impl).run()
    await bounded(answer_each_request(impl, handler))
    assert await bounded(handler) == ["first!", "second!"]
    assert handler.ctx.is_running is False


async def test_answers_that_come_before_their_waits_are_kept_for_them(
    impl: SimpleNamespace, bounded: Any
) -> None:
    if impl.name == "workflows":
        pytest.skip("upstream drops an event sent before its wait is registered")
    # Each step pauses between its request and its wait: the answers always come first.
    handler = two_askers(impl, pause=0.3).run()
    await bounded(answer_each_request(impl, handler))
    assert await bounded(handler) == ["first!", "second!"]


async def test_a_wait_takes_the_oldest_early_answer_that_meets_its_requirements(
    impl: SimpleNamespace, bounded: Any
) -> None:
    if impl.name == "workflows":
        pytest.skip("upstream drops an event sent before its wait is registered")
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    started: list[str] = []  # a Celery worker runs the step in a thread of its own

    class Answer(impl.Event):
        user: str
        text: str

    class Gate(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            started.append("ask")
            await asyncio.sleep(0.5)
            answer = await ctx.wait_for_event(Answer, requirements={"user": "ada"})
            return StopEvent(result=answer.text)

    handler = Gate(timeout=10).run()
    while not started:
        await asyncio.sleep(0.02)
    for user, text in [("bob", "no"), ("ada", "first"), ("ada", "second")]:
        handler.ctx.send_event(Answer(user=user, text=text))
    internal: list[str] = []

    async def read() -> None:
        async for ev in handler.stream_events(expose_internal=True):
            internal.append(type(ev).__name__)

    await bounded(read())
    assert await bounded(handler) == "first"
    # Nothing took them when they came: each is still reported, as before (the last
    # may come after the run ended, when a run takes nothing).
    assert internal.count("UnhandledEvent") >= 2


async def test_an_event_sent_before_a_join_waits_for_it_resumes_the_join(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Left(impl.Event):
        value: str

    class Right(impl.Event):
        value: str

    class Ping(impl.Event):
        value: str

    class Joined(impl.Workflow):
        @step
        async def emit(self, ctx: Context, ev: StartEvent) -> Left | Right | Ping | None:
            ctx.send_event(Left(value="l"))
            ctx.send_event(Right(value="r"))
            ctx.send_event(Ping(value="p"))
            return None

        @step
        async def join(self, ctx: Context, left: Left, right: Right) -> StopEvent:
            ping = await ctx.wait_for_event(Ping)
            return StopEvent(result=left.value + right.value + ping.value)

    assert await bounded(Joined(timeout=10, disable_validation=True).run()) == "lrp"


async def test_a_resumed_wait_with_requirements_takes_an_answer_sent_at_once(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot at the request, cancel, resume and answer at once: the resumed step may
    register its wait again after the answer came."""

    def gatekeeper() -> tuple[Any, type]:
        StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
        Context = impl.Context

        class Key(impl.Event):
            owner: str

        class Door(impl.Workflow):
            @step
            async def wait_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
                key = await ctx.wait_for_event(
                    Key,
                    waiter_event=impl.InputRequiredEvent(),
                    waiter_id="key_wait",
                    requirements={"owner": "ada"},
                    timeout=10,
                )
                return StopEvent(result=f"opened by {key.owner}")

        return Door(timeout=10), Key

    workflow, Key = gatekeeper()
    publish(monkeypatch, Key)
    handler = workflow.run()
    snapshot = None
    async for ev in handler.stream_events():
        if isinstance(ev, impl.InputRequiredEvent):
            snapshot = as_json(impl, handler.ctx)
            await bounded(handler.cancel_run())
            break
    assert snapshot is not None

    fresh, Key2 = gatekeeper()
    publish(monkeypatch, Key2)
    restored = impl.Context.from_dict(fresh, snapshot, serializer=impl.JsonSerializer())
    resumed = fresh.run(ctx=restored)
    resumed.ctx.send_event(Key2(owner="ada"))
    assert await bounded(resumed) == "opened by ada"


# --- cancel, then resume --------------------------------------------------------------


def two_steps(impl: SimpleNamespace, started: list[str]) -> Any:
    """``first`` counts its runs and hands over to ``second``, which takes a while."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Handover(impl.Event):
        pass

    class Slow(impl.Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> Handover:
            async with ctx.store.edit_state() as state:
                state["first_runs"] = state.get("first_runs", 0) + 1
            return Handover()

        @step
        async def second(self, ctx: Context, ev: Handover) -> StopEvent:
            started.append("second")
            await asyncio.sleep(0.6 if len(started) == 1 else 0.0)
            return StopEvent(result="done")

    return Slow(timeout=10), Handover


async def test_a_run_cancelled_mid_step_snapshots_as_running_and_resumes_its_step(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    workflow, Handover = two_steps(impl, started)
    publish(monkeypatch, Handover)
    handler = workflow.run()
    while not started:
        await asyncio.sleep(0.02)
    await bounded(handler.cancel_run())
    assert isinstance(exception_of(handler), impl.errors.WorkflowCancelledByUser)
    snapshot = as_json(impl, handler.ctx)
    assert snapshot["is_running"] is True
    [item] = snapshot["workers"]["second"]["in_progress"]
    assert snapshot["workers"]["second"]["queue"] == []
    assert json.loads(item["event"])["qualified_name"].endswith("Handover")
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)

    restored = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    resumed = workflow.run(ctx=restored)
    assert await bounded(resumed) == "done"
    assert started == ["second", "second"]
    assert await bounded(resumed.ctx.store.get("first_runs")) == 1


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
async def test_a_cancelled_runs_snapshot_resumes_in_the_other_implementation(
    get_impl: Any, bounded: Any, monkeypatch: pytest.MonkeyPatch, producer: str, consumer: str
) -> None:
    source, target = get_impl(producer), get_impl(consumer)
    started: list[str] = []
    workflow, Handover = two_steps(source, started)
    publish(monkeypatch, Handover)
    handler = workflow.run()
    while not started:
        await asyncio.sleep(0.02)
    await bounded(handler.cancel_run())
    snapshot = as_json(source, handler.ctx)

    fresh, Handover2 = two_steps(target, started)
    publish(monkeypatch, Handover2)
    restored = target.Context.from_dict(fresh, snapshot, serializer=target.JsonSerializer())
    resumed = fresh.run(ctx=restored)
    assert await bounded(resumed) == "done"
    assert started == ["second", "second"]
    assert await bounded(resumed.ctx.store.get("first_runs")) == 1


async def test_a_run_cancelled_at_its_request_resumes_from_its_snapshot(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    StopEvent, step, Context = impl.StopEvent, impl.step, impl.Context
    InputRequiredEvent, HumanResponseEvent = impl.InputRequiredEvent, impl.HumanResponseEvent

    class Begin(impl.StartEvent):
        topic: str

    class Interview(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: Begin) -> InputRequiredEvent:
            await ctx.store.set("ask_runs", await ctx.store.get("ask_runs", default=0) + 1)
            return InputRequiredEvent(prefix=ev.topic)

        @step
        async def complete(self, ctx: Context, ev: HumanResponseEvent) -> StopEvent:
            runs = await ctx.store.get("complete_runs", default=0)
            await ctx.store.set("complete_runs", runs + 1)
            return StopEvent(result=ev.response)

    publish(monkeypatch, Begin)
    workflow = Interview(timeout=10)
    handler = workflow.run(topic="tea")
    async for ev in handler.stream_events():
        if isinstance(ev, impl.InputRequiredEvent):
            break
    await bounded(handler.cancel_run())
    assert isinstance(exception_of(handler), impl.errors.WorkflowCancelledByUser)
    snapshot = as_json(impl, handler.ctx)
    assert snapshot["is_running"] is True

    restored = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    resumed = workflow.run(ctx=restored)
    resumed.ctx.send_event(impl.HumanResponseEvent(response="green"))
    streamed = await bounded(_all(resumed))
    assert [type(e).__name__ for e in streamed] == ["StopEvent"]
    assert await bounded(resumed) == "green"
    assert await bounded(resumed.ctx.store.get("ask_runs")) == 1
    assert await bounded(resumed.ctx.store.get("complete_runs")) == 1


async def test_a_run_cancelled_while_waiting_keeps_its_waiter_for_the_resume(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Reply(impl.Event):
        text: str

    class Asker(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            reply = await ctx.wait_for_event(
                Reply, waiter_event=impl.InputRequiredEvent(prefix="?"), timeout=10
            )
            return StopEvent(result=reply.text)

    publish(monkeypatch, Reply)
    workflow = Asker(timeout=10)
    handler = workflow.run()
    async for ev in handler.stream_events():
        if isinstance(ev, impl.InputRequiredEvent):
            break
    await bounded(handler.cancel_run())
    snapshot = as_json(impl, handler.ctx)
    assert snapshot["is_running"] is True
    [waiter] = snapshot["workers"]["ask"]["collected_waiters"]
    assert waiter["waiting_for_event"].endswith("Reply")
    assert snapshot["workers"]["ask"]["in_progress"] == snapshot["workers"]["ask"]["queue"] == []

    restored = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    resumed = workflow.run(ctx=restored)
    resumed.ctx.send_event(Reply(text="later"))
    assert await bounded(resumed) == "later"


async def _all(handler: Any) -> list[Any]:
    return [ev async for ev in handler.stream_events()]
