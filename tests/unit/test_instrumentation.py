"""Steps open instrumentation spans as upstream does: a span opened inside a step nests
under the step's span, and the step's span carries the run id."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.span.simple import SimpleSpan
from llama_index_instrumentation.span_handlers import BaseSpanHandler

from celery_workflows import Context, Workflow, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

user_dispatcher = get_dispatcher("tests.instrumentation")


class Recorder(BaseSpanHandler[SimpleSpan]):
    """Keeps every span it sees: id, parent and tags."""

    seen: list[tuple[str, str | None, dict[str, Any]]] = []

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan:
        self.seen.append((id_, parent_span_id, dict(tags or {})))
        return SimpleSpan(id_=id_, parent_id=parent_span_id, tags=tags or {})

    def prepare_to_exit_span(self, id_: str, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return None

    def prepare_to_drop_span(self, id_: str, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    handler.seen = []
    root = get_dispatcher()
    root.add_span_handler(handler)
    try:
        yield handler
    finally:
        root.span_handlers.remove(handler)


@user_dispatcher.span
async def look_up(topic: str) -> str:
    return f"notes on {topic}"


class Middle(Event):
    notes: str


class Traced(Workflow):
    @step
    async def research(self, ev: StartEvent) -> Middle:
        return Middle(notes=await look_up("tides"))

    @step
    async def ask(self, ctx: Context, ev: Middle) -> StopEvent:
        asked = InputRequiredEvent(prefix="ok?")
        answer = await ctx.wait_for_event(HumanResponseEvent, waiter_event=asked)
        return StopEvent(result=f"{ev.notes}, {answer.response}")


async def test_a_span_opened_in_a_step_nests_under_the_step_span_with_the_run_id(
    recorder: Recorder,
) -> None:
    handler = Traced(timeout=10).run()
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            handler.ctx.send_event(HumanResponseEvent(response="ok"))
    assert await handler == "notes on tides, ok"
    spans = {span_id: (parent, tags) for span_id, parent, tags in recorder.seen}
    [step_span] = [s for s in spans if ".research-" in s]
    [user_span] = [s for s in spans if "look_up" in s]
    assert spans[user_span][0] == step_span
    assert spans[step_span][1]["run_id"] == handler.run_id
    assert spans[user_span][1]["run_id"] == handler.run_id  # tags reach nested spans
    # A step that waits leaves its span as a plain exit, and runs again in a new one.
    assert len([s for s in spans if ".ask-" in s]) == 2


class _CountingStore:
    """Only what ``RunTags.of`` uses of a store, counting reads."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.reads = 0

    async def get_run(self, run_id: str) -> Any:
        self.reads += 1
        return type("Run", (), {"meta": self.meta})()


async def test_a_run_without_caller_tags_costs_its_steps_no_read() -> None:
    from celery_workflows.runtime.instrumentation import TAGS_META_KEY, RunTags, tagged

    # A delivery says whether its run keeps caller tags; only then is the run read, once.
    assert tagged({}) == {}
    assert tagged({TAGS_META_KEY: {"team": "a"}}) == {"tagged": True}
    store = _CountingStore({TAGS_META_KEY: {"team": "a"}})
    tags = RunTags()
    assert await tags.of(store, "r1", {}) == {}  # type: ignore[arg-type]
    assert store.reads == 0
    for _ in range(3):
        assert await tags.of(store, "r1", tagged(store.meta)) == {"team": "a"}  # type: ignore[arg-type]
    assert store.reads == 1
