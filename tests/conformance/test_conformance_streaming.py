"""Human in the loop and the event stream: wait_for_event, send_event, stream_events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


def asking_workflow(impl: SimpleNamespace, runs: list[str], **wait_kwargs: Any) -> Any:
    """One step that waits for a HumanResponseEvent and stops with its ``response``."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    InputRequiredEvent, HumanResponseEvent = impl.InputRequiredEvent, impl.HumanResponseEvent

    class Asking(impl.Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            runs.append("ask")
            reply = await ctx.wait_for_event(
                HumanResponseEvent,
                waiter_event=InputRequiredEvent(prefix="name?"),
                **wait_kwargs,
            )
            return StopEvent(result=reply.response)

    return Asking()


async def test_wait_for_event_resumes_with_the_sent_event_and_reruns_the_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    runs: list[str] = []
    handler = asking_workflow(impl, runs).run()

    async def converse() -> list[Any]:
        seen = []
        async for ev in handler.stream_events():
            seen.append(ev)
            if isinstance(ev, impl.InputRequiredEvent):
                handler.ctx.send_event(impl.HumanResponseEvent(response="ada"))
        return seen

    seen = await bounded(converse())
    assert await bounded(handler) == "ada"
    assert runs == ["ask", "ask"]  # the step body ran again from the top
    assert [type(ev) for ev in seen] == [impl.InputRequiredEvent, impl.StopEvent]
    assert seen[0].prefix == "name?"


async def test_wait_for_event_ignores_events_that_miss_the_requirements(
    impl: SimpleNamespace, bounded: Any
) -> None:
    runs: list[str] = []
    handler = asking_workflow(impl, runs, requirements={"user": "ada"}).run()

    async def converse() -> None:
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                handler.ctx.send_event(impl.HumanResponseEvent(response="no", user="bob"))
                handler.ctx.send_event(impl.HumanResponseEvent(response="yes", user="ada"))

    await bounded(converse())
    assert await bounded(handler) == "yes"
    assert runs == ["ask", "ask"]


async def test_handler_send_event_answers_a_waiting_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = asking_workflow(impl, []).run()

    async def converse() -> None:
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                await handler.send_event(impl.HumanResponseEvent(response="via handler"))

    await bounded(converse())
    assert await bounded(handler) == "via handler"


async def test_wait_for_event_timeout_fails_the_run_with_timeout_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = asking_workflow(impl, [], timeout=0.2).run()
    with pytest.raises(TimeoutError) as info:
        await bounded(handler)
    assert "Timed out waiting for HumanResponseEvent" in str(info.value)


async def test_an_input_required_event_returned_by_a_step_is_streamed(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    InputRequiredEvent, HumanResponseEvent = impl.InputRequiredEvent, impl.HumanResponseEvent

    class Question(InputRequiredEvent):
        text: str

    class Reply(HumanResponseEvent):
        text: str

    class Interview(impl.Workflow):
        @step
        async def ask(self, ev: StartEvent) -> Question:
            return Question(text="favourite colour?")

        @step
        async def listen(self, ev: Reply) -> StopEvent:
            return StopEvent(result=ev.text)

    handler = Interview().run()

    async def converse() -> list[str]:
        questions = []
        async for ev in handler.stream_events():
            if isinstance(ev, Question):
                questions.append(ev.text)
                handler.ctx.send_event(Reply(text="blue"))
        return questions

    assert await bounded(converse()) == ["favourite colour?"]
    assert await bounded(handler) == "blue"


async def test_write_event_to_stream_publishes_events_in_order_before_the_stop_event(
    impl: SimpleNamespace, drain: Any, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Progress(Event):
        pct: int

    class Reporting(impl.Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            for pct in (10, 50, 100):
                ctx.write_event_to_stream(Progress(pct=pct))
            return StopEvent(result="done")

    handler = Reporting().run()
    events = await drain(handler)
    assert [ev.pct for ev in events[:-1]] == [10, 50, 100]
    assert all(type(ev) is Progress for ev in events[:-1])
    assert type(events[-1]) is impl.StopEvent
    assert events[-1].result == "done"
    assert await bounded(handler) == "done"


async def test_stream_events_a_second_time_raises_workflow_runtime_error(
    impl: SimpleNamespace, drain: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Once(impl.Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=1)

    handler = Once().run()
    await drain(handler)
    with pytest.raises(impl.errors.WorkflowRuntimeError) as info:
        await drain(handler)
    assert "All the streamed events have already been consumed." in str(info.value)


async def test_stream_events_hides_internal_events_unless_exposed(
    impl: SimpleNamespace, drain: Any, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    events = impl.events

    class Single(impl.Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=1)

    plain = await drain(Single().run())
    assert [type(ev) for ev in plain] == [impl.StopEvent]

    handler = Single().run()

    async def collect() -> list[Any]:
        return [ev async for ev in handler.stream_events(expose_internal=True)]

    internal = await bounded(collect())
    changes = [ev for ev in internal if isinstance(ev, events.StepStateChanged)]
    assert [(ev.name, ev.step_state) for ev in changes] == [
        ("only", events.StepState.RUNNING),
        ("only", events.StepState.NOT_RUNNING),
    ]
    assert type(internal[-1]) is impl.StopEvent


async def test_an_event_sent_in_that_nothing_takes_is_streamed_as_unhandled(
    impl: SimpleNamespace, bounded: Any
) -> None:
    class Stray(impl.Event):
        note: str

    runs: list[str] = []
    handler = asking_workflow(impl, runs).run()

    async def converse() -> list[Any]:
        seen = []
        async for ev in handler.stream_events(expose_internal=True):
            seen.append(ev)
            if isinstance(ev, impl.InputRequiredEvent):
                handler.ctx.send_event(Stray(note="nobody listens"))
            if isinstance(ev, impl.events.UnhandledEvent):
                handler.ctx.send_event(impl.HumanResponseEvent(response="ada"))
        return seen

    seen = await bounded(converse())
    assert await bounded(handler) == "ada"
    unhandled = [ev for ev in seen if isinstance(ev, impl.events.UnhandledEvent)]
    assert [(ev.event_type, ev.step_name) for ev in unhandled] == [("Stray", None)]
    assert unhandled[0].qualified_name.endswith(".Stray")


async def test_workflow_test_runner_collects_streamed_events_and_result(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Note(Event):
        text: str

    class Noting(impl.Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(Note(text=ev.get("text")))
            return StopEvent(result="noted")

    runner = impl.testing.WorkflowTestRunner(Noting())
    outcome = await bounded(runner.run(start_event=StartEvent(text="hi"), expose_internal=False))
    assert outcome.result == "noted"
    assert [type(ev) for ev in outcome.collected] == [Note, impl.StopEvent]
    assert outcome.event_types == {Note: 1, impl.StopEvent: 1}
    assert outcome.collected[0].text == "hi"


async def test_workflow_test_runner_excludes_listed_event_types(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Note(Event):
        pass

    class Noting(impl.Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(Note())
            return StopEvent(result="noted")

    runner = impl.testing.WorkflowTestRunner(Noting())
    outcome = await bounded(runner.run(exclude_events=[impl.events.StepStateChanged, Note]))
    assert [type(ev) for ev in outcome.collected] == [impl.StopEvent]
    assert outcome.result == "noted"


async def test_a_step_state_change_names_what_the_step_ran_on_and_produced(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    events = impl.events

    class Middle(Event):
        pass

    class Two(impl.Workflow):
        @step
        async def first(self, ev: StartEvent) -> Middle:
            return Middle()

        @step
        async def second(self, ev: Middle) -> StopEvent:
            return StopEvent(result=1)

    handler = Two().run()

    async def collect() -> list[Any]:
        return [ev async for ev in handler.stream_events(expose_internal=True)]

    changes = [ev for ev in await bounded(collect()) if isinstance(ev, events.StepStateChanged)]
    stops = {ev.name: ev for ev in changes if ev.step_state == events.StepState.NOT_RUNNING}
    starts = {ev.name: ev for ev in changes if ev.step_state == events.StepState.RUNNING}
    assert (starts["first"].input_event_name, starts["second"].input_event_name) == (
        "StartEvent",
        "Middle",
    )
    assert stops["first"].input_event_name == str(impl.StartEvent)
    assert stops["first"].output_event_name == str(Middle)
    assert stops["second"].output_event_name == str(impl.StopEvent)
