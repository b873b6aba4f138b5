"""``run(ctx=...)`` modes and Context snapshots (``to_dict`` / ``from_dict``).

``JsonSerializer`` records a user event or state model by ``<module>.<class name>`` and
imports it back on load. Event classes here are defined per implementation inside the
tests, so ``publish`` binds them on this module for the duration of a test.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel


class Tally(BaseModel):
    """Typed state shared by both implementations (a plain pydantic model)."""

    count: int = 0
    answers: list[str] = []


def publish(monkeypatch: pytest.MonkeyPatch, *classes: type) -> None:
    """Make classes importable as ``<this module>.<name>`` for the serializer."""
    module = sys.modules[__name__]
    for cls in classes:
        assert cls.__module__ == __name__
        monkeypatch.setattr(module, cls.__name__, cls, raising=False)


def counting_workflow(impl: SimpleNamespace, calls: list[str]) -> Any:
    """One step that increments ``count`` in the state and returns the new value."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Counting(impl.Workflow):
        @step
        async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
            calls.append("count")
            async with ctx.store.edit_state() as state:
                state["count"] = state.get("count", 0) + 1
            return StopEvent(result=await ctx.store.get("count"))

    return Counting()


def asking_workflow(impl: SimpleNamespace, calls: list[str]) -> tuple[Any, type, type]:
    """start -> Asked; ``ask`` waits for an Answer (HITL) and stops with it.

    Returns the workflow and its Asked and Answer classes (to be published).
    """
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context, InputRequiredEvent = impl.Context, impl.InputRequiredEvent

    class Asked(Event):
        question: str

    class Answer(impl.HumanResponseEvent):
        text: str

    class Asking(impl.Workflow):
        @step
        async def start(self, ctx: Context[Tally], ev: StartEvent) -> Asked:
            calls.append("start")
            async with ctx.store.edit_state() as state:
                state.count += 1
            return Asked(question="name?")

        @step
        async def ask(self, ctx: Context[Tally], ev: Asked) -> StopEvent:
            calls.append("ask")
            answer = await ctx.wait_for_event(
                Answer, waiter_event=InputRequiredEvent(prefix=ev.question)
            )
            async with ctx.store.edit_state() as state:
                state.answers.append(answer.text)
            return StopEvent(result=f"{ev.question} {answer.text}")

    return Asking(timeout=10), Asked, Answer


async def snapshot_while_waiting(
    impl: SimpleNamespace, workflow: Any, bounded: Any
) -> dict[str, Any]:
    """Run until the InputRequiredEvent, snapshot through JSON, then cancel the run."""
    handler = workflow.run()

    async def until_input_required() -> dict[str, Any]:
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                data = handler.ctx.to_dict(serializer=impl.JsonSerializer())
                snapshot: dict[str, Any] = json.loads(json.dumps(data))
                return snapshot
        raise AssertionError("the run ended without asking for input")

    snapshot = await bounded(until_input_required())
    await bounded(handler.cancel_run())
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)
    return snapshot


async def answer_when_asked(impl: SimpleNamespace, handler: Any, answer: Any) -> None:
    """Send ``answer`` once the InputRequiredEvent is streamed, then drain the stream.

    An event sent before the step registered its waiter is dropped by upstream, so
    answers are only sent after the question.
    """
    async for ev in handler.stream_events():
        if isinstance(ev, impl.InputRequiredEvent):
            handler.ctx.send_event(answer)


async def test_run_without_ctx_starts_from_fresh_state(impl: SimpleNamespace, bounded: Any) -> None:
    workflow = counting_workflow(impl, [])
    assert await bounded(workflow.run()) == 1
    assert await bounded(workflow.run()) == 1


async def test_run_with_a_new_context_uses_its_prepared_state(
    impl: SimpleNamespace, bounded: Any
) -> None:
    workflow = counting_workflow(impl, [])
    ctx = impl.Context(workflow)
    assert ctx.is_running is False
    await bounded(ctx.store.set("count", 41))
    handler = workflow.run(ctx=ctx)
    assert handler.ctx is ctx
    assert await bounded(handler) == 42


async def test_run_with_the_context_of_a_finished_run_starts_a_new_run_keeping_state(
    impl: SimpleNamespace, bounded: Any
) -> None:
    calls: list[str] = []
    workflow = counting_workflow(impl, calls)
    first = workflow.run()
    assert await bounded(first) == 1
    assert first.ctx.is_running is False
    second = workflow.run(ctx=first.ctx)
    assert await bounded(second) == 2
    assert calls == ["count", "count"]  # a new StartEvent was sent


async def test_run_with_the_context_of_a_running_run_raises_context_state_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    calls: list[str] = []
    workflow, _, Answer = asking_workflow(impl, calls)
    handler = workflow.run()
    assert handler.ctx.is_running is True
    with pytest.raises(impl.errors.ContextStateError) as info:
        workflow.run(ctx=handler.ctx)
    assert (
        "Cannot start a new run while context is already running. "
        "Wait for completion or use a new Context."
    ) in str(info.value)
    await bounded(answer_when_asked(impl, handler, Answer(text="ok")))
    assert await bounded(handler) == "name? ok"


async def test_a_restored_mid_run_snapshot_resumes_without_a_new_start_event(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    workflow, Asked, Answer = asking_workflow(impl, calls)
    publish(monkeypatch, Asked, Answer)
    snapshot = await snapshot_while_waiting(impl, workflow, bounded)
    assert snapshot["is_running"] is True
    assert calls == ["start", "ask"]

    fresh, _, _ = asking_workflow(impl, calls)
    restored = impl.Context.from_dict(fresh, snapshot, serializer=impl.JsonSerializer())
    assert restored.is_running is True
    handler = fresh.run(ctx=restored)
    # The waiter came back with the snapshot: the question is not streamed again.
    handler.ctx.send_event(Answer(text="ada"))
    assert await bounded(handler) == "name? ada"
    # The waiting step ran again from the top; the start step did not.
    assert calls == ["start", "ask", "ask"]
    state = await bounded(handler.ctx.store.get_state())
    assert (state.count, state.answers) == (1, ["ada"])


async def test_ctx_to_dict_has_the_v2_snapshot_shape(impl: SimpleNamespace, bounded: Any) -> None:
    workflow = counting_workflow(impl, [])
    handler = workflow.run()
    await bounded(handler)
    data = handler.ctx.to_dict(serializer=impl.JsonSerializer())
    json.dumps(data)  # plain JSON
    assert data["version"] == 2
    assert data["is_running"] is False
    assert set(data["workers"]) == {"count"}
    state = data["state"]
    assert state["state_type"] == "DictState"
    assert state["state_module"] == f"{impl.name}.context.state_store"
    assert "state_data" in state
    assert {"version", "state", "is_running", "workers"} <= set(data)


async def test_ctx_to_dict_before_the_run_has_empty_state(impl: SimpleNamespace) -> None:
    workflow = counting_workflow(impl, [])
    data = impl.Context(workflow).to_dict()
    assert data["version"] == 2
    assert data["is_running"] is False
    assert data["state"] == {}


async def test_ctx_round_trip_through_json_keeps_state_for_the_next_run(
    impl: SimpleNamespace, bounded: Any
) -> None:
    workflow = counting_workflow(impl, [])
    handler = workflow.run()
    assert await bounded(handler) == 1
    await bounded(handler.ctx.store.set("note.text", "kept"))
    data = json.loads(json.dumps(handler.ctx.to_dict(serializer=impl.JsonSerializer())))

    other = counting_workflow(impl, [])
    restored = impl.Context.from_dict(other, data, serializer=impl.JsonSerializer())
    assert restored.is_running is False
    assert await bounded(restored.store.get("note.text")) == "kept"
    assert await bounded(other.run(ctx=restored)) == 2


async def test_ctx_round_trip_of_typed_state_restores_the_model(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    workflow, Asked, Answer = asking_workflow(impl, calls)
    publish(monkeypatch, Asked, Answer)
    handler = workflow.run()
    await bounded(answer_when_asked(impl, handler, Answer(text="x")))
    await bounded(handler)
    data = json.loads(json.dumps(handler.ctx.to_dict(serializer=impl.JsonSerializer())))
    assert data["state"]["state_type"] == "Tally"
    assert data["state"]["state_module"] == __name__

    fresh, _, _ = asking_workflow(impl, calls)
    restored = impl.Context.from_dict(fresh, data, serializer=impl.JsonSerializer())
    state = await bounded(restored.store.get_state())
    assert isinstance(state, Tally)
    assert (state.count, state.answers) == (1, ["x"])


async def test_ctx_round_trip_with_the_pickle_serializer_keeps_state(
    impl: SimpleNamespace, bounded: Any
) -> None:
    workflow = counting_workflow(impl, [])
    handler = workflow.run()
    await bounded(handler)
    # A set is not JSON: PickleSerializer falls back to pickle for it.
    await bounded(handler.ctx.store.set("blob", {"k": {1, 2}}))
    data = handler.ctx.to_dict(serializer=impl.PickleSerializer())
    restored = impl.Context.from_dict(workflow, data, serializer=impl.PickleSerializer())
    assert await bounded(restored.store.get("blob")) == {"k": {1, 2}}
    assert await bounded(workflow.run(ctx=restored)) == 2


async def test_run_id_keyword_names_the_run(impl: SimpleNamespace, bounded: Any) -> None:
    workflow = counting_workflow(impl, [])
    handler = workflow.run(run_id="run-42")
    assert handler.run_id == "run-42"
    assert await bounded(handler) == 1
    assert isinstance(workflow.run().run_id, str)


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
async def test_a_mid_run_snapshot_resumes_in_the_other_implementation(
    get_impl: Any,
    bounded: Any,
    monkeypatch: pytest.MonkeyPatch,
    producer: str,
    consumer: str,
) -> None:
    # Same qualified names, different base classes: what a user migrating between the
    # packages has. Only user types (events and a plain pydantic state) are in flight.
    source, target = get_impl(producer), get_impl(consumer)
    calls: list[str] = []
    workflow, Asked, Answer = asking_workflow(source, calls)
    publish(monkeypatch, Asked, Answer)
    snapshot = await snapshot_while_waiting(source, workflow, bounded)

    fresh, Asked2, Answer2 = asking_workflow(target, calls)
    publish(monkeypatch, Asked2, Answer2)
    restored = target.Context.from_dict(fresh, snapshot, serializer=target.JsonSerializer())
    handler = fresh.run(ctx=restored)
    handler.ctx.send_event(Answer2(text="moved"))
    assert await bounded(handler) == "name? moved"
    assert calls == ["start", "ask", "ask"]
    state = await bounded(handler.ctx.store.get_state())
    assert (state.count, state.answers) == (1, ["moved"])


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
async def test_a_finished_dict_state_snapshot_continues_in_the_other_implementation(
    get_impl: Any, bounded: Any, producer: str, consumer: str
) -> None:
    source, target = get_impl(producer), get_impl(consumer)
    workflow = counting_workflow(source, [])
    handler = workflow.run()
    assert await bounded(handler) == 1
    await bounded(handler.ctx.store.set("profile.name", "ada"))
    data = json.loads(json.dumps(handler.ctx.to_dict(serializer=source.JsonSerializer())))

    other = counting_workflow(target, [])
    restored = target.Context.from_dict(other, data, serializer=target.JsonSerializer())
    assert await bounded(other.run(ctx=restored)) == 2
    assert await bounded(restored.store.get("profile.name")) == "ada"
