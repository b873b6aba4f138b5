"""What a Context snapshot (``to_dict`` / ``from_dict``) carries across, as upstream: a
retry waiting out its delay, waits with requirements, several waits in flight in
different steps, and a human-in-the-loop run started again from a finished context with
a custom start event.

Event classes are defined per implementation inside the tests and published on this
module for the serializer (``JsonSerializer`` names a class by module and name).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from snapshot_helpers import as_json, publish


async def cancelled(impl: SimpleNamespace, handler: Any, bounded: Any) -> None:
    await bounded(handler.cancel_run())
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)


#: The retry's delay: long enough that a resume applying a fresh delay (instead of the
#: snapshot's due time) is told apart from a slow pick-up on a loaded machine.
RETRY_DELAY = 2.5


def flaky_workflow(impl: SimpleNamespace, seen: list[Any]) -> Any:
    """One step that fails its first attempt, then waits RETRY_DELAY before its retry."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    rp = impl.retry_policy

    class Flaky(impl.Workflow):
        @step(
            retry_policy=rp.retry_policy(
                wait=rp.wait_fixed(RETRY_DELAY), stop=rp.stop_after_attempt(5)
            )
        )
        async def s(self, ctx: Context, ev: StartEvent) -> StopEvent:
            info = ctx.retry_info()
            last = None if info.last_exception is None else str(info.last_exception)
            seen.append((time.time(), info.retry_number, last))
            if len(seen) == 1:
                raise ValueError("first fails")
            return StopEvent(result="ok")

    return Flaky(timeout=20)


@pytest.mark.parametrize("resumed", ["before_due", "after_due"])
async def test_a_retry_waiting_out_its_delay_survives_a_snapshot(
    impl: SimpleNamespace, bounded: Any, resumed: str
) -> None:
    seen: list[Any] = []
    handler = flaky_workflow(impl, seen).run()
    while not seen:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # the failure is committed: the retry waits out its delay
    snapshot = as_json(impl, handler.ctx)
    await cancelled(impl, handler, bounded)
    [item] = snapshot["workers"]["s"]["queue"]
    assert item["attempts"] == 1
    assert item["last_exception"] == {
        "exception_type": "builtins.ValueError",
        "exception_message": "first fails",
    }
    assert RETRY_DELAY - 0.1 < item["not_before"] - item["first_attempt_at"] < RETRY_DELAY + 0.5
    assert item["first_attempt_at"] <= item["last_failed_at"] < item["not_before"]
    if resumed == "after_due":
        await asyncio.sleep(max(0.0, item["not_before"] - time.time()) + 0.1)

    workflow = flaky_workflow(impl, seen)
    restored = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    started = time.time()
    assert await bounded(workflow.run(ctx=restored)) == "ok"
    [(at, retry_number, last)] = seen[1:]  # delivered once
    assert (retry_number, last) == (1, "first fails")
    assert at >= item["not_before"] - 0.05  # not before it was due
    # Due at the snapshot's time, not after a fresh delay from the resume.
    assert at - max(started, item["not_before"]) < RETRY_DELAY - 0.5


def requiring_workflow(impl: SimpleNamespace, calls: list[str]) -> tuple[Any, type]:
    """A step waiting for an Answer from user "ada" only."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Answer(impl.HumanResponseEvent):
        user: str
        text: str

    class Gatekeeper(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            calls.append("ask")
            answer = await ctx.wait_for_event(
                Answer,
                waiter_event=impl.InputRequiredEvent(prefix="who?"),
                requirements={"user": "ada"},
            )
            return StopEvent(result=answer.text)

    return Gatekeeper(timeout=10), Answer


async def snapshot_when_asked(impl: SimpleNamespace, handler: Any, bounded: Any, asks: int) -> Any:
    """Read the stream until ``asks`` InputRequiredEvents came, then snapshot and cancel."""

    async def until_asked() -> dict[str, Any]:
        seen = 0
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                seen += 1
                if seen == asks:
                    return as_json(impl, handler.ctx)
        raise AssertionError("the run ended without asking")

    snapshot = await bounded(until_asked())
    await cancelled(impl, handler, bounded)
    return snapshot


async def test_a_wait_with_requirements_survives_a_snapshot(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    workflow, Answer = requiring_workflow(impl, calls)
    publish(monkeypatch, Answer)
    snapshot = await snapshot_when_asked(impl, workflow.run(), bounded, asks=1)
    [waiter] = snapshot["workers"]["ask"]["collected_waiters"]
    assert waiter["has_requirements"] is True

    fresh, Answer2 = requiring_workflow(impl, calls)
    publish(monkeypatch, Answer2)
    restored = impl.Context.from_dict(fresh, snapshot, serializer=impl.JsonSerializer())
    handler = fresh.run(ctx=restored)
    streamed: list[str] = []

    async def read() -> None:
        async for ev in handler.stream_events():
            streamed.append(type(ev).__name__)

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.5)  # the step runs again and waits again, with its requirements
    handler.ctx.send_event(Answer2(user="bob", text="from bob"))
    await asyncio.sleep(0.5)
    assert not handler.is_done()
    handler.ctx.send_event(Answer2(user="ada", text="from ada"))
    assert await bounded(handler) == "from ada"
    await bounded(reader)
    assert calls == ["ask", "ask", "ask"]
    assert "InputRequiredEvent" not in streamed  # asked once, before the snapshot


def two_questions_workflow(impl: SimpleNamespace) -> tuple[Any, list[type]]:
    """Two steps that wait at the same time, for different answers."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context, InputRequiredEvent = impl.Context, impl.InputRequiredEvent

    class AskName(Event):
        pass

    class AskAge(Event):
        pass

    class Name(impl.HumanResponseEvent):
        name: str

    class Age(impl.HumanResponseEvent):
        age: int

    class Answered(Event):
        key: str

    class Survey(impl.Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> AskName | AskAge:
            ctx.send_event(AskName())
            ctx.send_event(AskAge())
            return None

        @step
        async def ask_name(self, ctx: Context, ev: AskName) -> Answered:
            got = await ctx.wait_for_event(Name, waiter_event=InputRequiredEvent(prefix="name?"))
            await ctx.store.set("name", got.name)
            return Answered(key="name")

        @step
        async def ask_age(self, ctx: Context, ev: AskAge) -> Answered:
            got = await ctx.wait_for_event(Age, waiter_event=InputRequiredEvent(prefix="age?"))
            await ctx.store.set("age", got.age)
            return Answered(key="age")

        @step
        async def done(self, ctx: Context, ev: Answered) -> StopEvent | None:
            async with ctx.store.edit_state() as state:
                state["answered"] = state.get("answered", 0) + 1
                if state["answered"] < 2:
                    return None
            return StopEvent(result=[await ctx.store.get("name"), await ctx.store.get("age")])

    return Survey(timeout=10), [Name, Age, AskName, AskAge, Answered]


async def test_waits_in_two_steps_at_once_survive_a_snapshot(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow, classes = two_questions_workflow(impl)
    publish(monkeypatch, *classes)
    snapshot = await snapshot_when_asked(impl, workflow.run(), bounded, asks=2)
    waiting = {
        step: [w["waiting_for_event"].rsplit(".", 1)[-1] for w in worker["collected_waiters"]]
        for step, worker in snapshot["workers"].items()
        if worker["collected_waiters"]
    }
    assert waiting == {"ask_name": ["Name"], "ask_age": ["Age"]}

    fresh, classes = two_questions_workflow(impl)
    publish(monkeypatch, *classes)
    Name2, Age2 = classes[:2]
    restored = impl.Context.from_dict(fresh, snapshot, serializer=impl.JsonSerializer())
    handler = fresh.run(ctx=restored)
    handler.ctx.send_event(Age2(age=36))
    handler.ctx.send_event(Name2(name="ada"))
    assert await bounded(handler) == ["ada", 36]


def interview_workflow(impl: SimpleNamespace) -> tuple[Any, type, type]:
    """A custom start event, one question, and state that counts the interviews."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Begin(StartEvent):
        topic: str

    class Reply(impl.HumanResponseEvent):
        text: str

    class Interview(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: Begin) -> StopEvent:
            reply = await ctx.wait_for_event(
                Reply, waiter_event=impl.InputRequiredEvent(prefix=ev.topic)
            )
            async with ctx.store.edit_state() as state:
                state["interviews"] = state.get("interviews", 0) + 1
                count = state["interviews"]
            return StopEvent(result=f"{ev.topic}: {reply.text} (#{count})")

    return Interview(timeout=10), Begin, Reply


async def interview(impl: SimpleNamespace, handler: Any, reply: Any, bounded: Any) -> Any:
    async def answer() -> None:
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                handler.ctx.send_event(reply)

    await bounded(answer())
    return await bounded(handler)


@pytest.mark.parametrize("through", ["context", "snapshot"])
async def test_a_finished_context_runs_again_with_a_custom_start_event(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    workflow, Begin, Reply = interview_workflow(impl)
    publish(monkeypatch, Begin, Reply)
    first = workflow.run(start_event=Begin(topic="tea"))
    assert await interview(impl, first, Reply(text="green"), bounded) == "tea: green (#1)"

    ctx = first.ctx
    if through == "snapshot":
        snapshot = as_json(impl, first.ctx)
        assert snapshot["is_running"] is False
        ctx = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    again = workflow.run(ctx=ctx, start_event=Begin(topic="cake"))
    assert await interview(impl, again, Reply(text="lemon"), bounded) == "cake: lemon (#2)"
    assert await bounded(again.ctx.store.get("interviews")) == 2


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
async def test_a_retry_snapshot_resumes_in_the_other_implementation(
    get_impl: Any, bounded: Any, producer: str, consumer: str
) -> None:
    source, target = get_impl(producer), get_impl(consumer)
    seen: list[Any] = []
    handler = flaky_workflow(source, seen).run()
    while not seen:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    snapshot = as_json(source, handler.ctx)
    await cancelled(source, handler, bounded)

    workflow = flaky_workflow(target, seen)
    restored = target.Context.from_dict(workflow, snapshot, serializer=target.JsonSerializer())
    assert await bounded(workflow.run(ctx=restored)) == "ok"
    [(at, retry_number, last)] = seen[1:]
    assert (retry_number, last) == (1, "first fails")
    assert at >= snapshot["workers"]["s"]["queue"][0]["not_before"] - 0.05


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
async def test_a_wait_with_requirements_resumes_in_the_other_implementation(
    get_impl: Any, bounded: Any, monkeypatch: pytest.MonkeyPatch, producer: str, consumer: str
) -> None:
    source, target = get_impl(producer), get_impl(consumer)
    calls: list[str] = []
    workflow, Answer = requiring_workflow(source, calls)
    publish(monkeypatch, Answer)
    snapshot = await snapshot_when_asked(source, workflow.run(), bounded, asks=1)

    fresh, Answer2 = requiring_workflow(target, calls)
    publish(monkeypatch, Answer2)
    restored = target.Context.from_dict(fresh, snapshot, serializer=target.JsonSerializer())
    handler = fresh.run(ctx=restored)
    await asyncio.sleep(0.5)  # the step runs again and waits again, with its requirements
    handler.ctx.send_event(Answer2(user="bob", text="from bob"))
    await asyncio.sleep(0.3)
    handler.ctx.send_event(Answer2(user="ada", text="from ada"))
    assert await bounded(handler) == "from ada"
    assert calls == ["ask", "ask", "ask"]
