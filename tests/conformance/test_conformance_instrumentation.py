"""Instrumentation as upstream 2.26 does it: a step runs under the run's instrument tags
(``llamaindex.run_id``, its input event and summary, and the caller's tags at ``run()``),
and a step stopped by ``cancel_run()`` leaves its span as an exit, not a drop."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags
from llama_index_instrumentation.event_handlers import BaseEventHandler
from llama_index_instrumentation.span.simple import SimpleSpan
from llama_index_instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr


class Spans(BaseSpanHandler[SimpleSpan]):
    """Records the ids of the spans exited and dropped."""

    _exited: list[str] = PrivateAttr(default_factory=list)
    _dropped: list[str] = PrivateAttr(default_factory=list)

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan:
        return SimpleSpan(id_=id_, parent_id=parent_span_id, tags=tags or {})

    def prepare_to_exit_span(self, id_: str, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        self._exited.append(id_)
        return self.open_spans.get(id_)

    def prepare_to_drop_span(self, id_: str, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        self._dropped.append(id_)
        return self.open_spans.get(id_)

    def exited(self, name: str) -> list[str]:
        return [i for i in self._exited if name in i]

    def dropped(self, name: str) -> list[str]:
        return [i for i in self._dropped if name in i]


class Events(BaseEventHandler):
    """Records the class names of the instrumentation events dispatched."""

    _names: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self._names.append(event.class_name())


@pytest.fixture
def spans() -> Iterator[Spans]:
    handler = Spans()
    root = get_dispatcher()
    root.span_handlers.append(handler)
    try:
        yield handler
    finally:
        root.span_handlers.remove(handler)


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events()
    root = get_dispatcher()
    root.event_handlers.append(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


async def test_a_step_sees_the_run_id_its_input_and_the_callers_instrument_tags(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    seen: dict[str, dict[str, Any]] = {}

    class Begin(StartEvent):
        topic: str

    class Middle(Event):
        n: int

    class Tagged(impl.Workflow):
        @step
        async def first(self, ev: Begin) -> Middle:
            seen["first"] = dict(active_instrument_tags.get())
            return Middle(n=3)

        @step
        async def second(self, ev: Middle) -> StopEvent:
            seen["second"] = dict(active_instrument_tags.get())
            return StopEvent()

    with instrument_tags({"foo": "bar"}):
        handler = Tagged(timeout=10).run(start_event=Begin(topic="tides"))
    await bounded(handler, 10)

    for name, event, summary in (
        ("first", "Begin", "Begin(topic='tides')"),
        ("second", "Middle", "Middle(n=3)"),
    ):
        tags = seen[name]
        assert tags["llamaindex.run_id"] == handler.run_id
        assert tags["llamaindex.step.input_event"] == event
        assert tags["llamaindex.step.input_summary"] == summary
        assert tags["foo"] == "bar"


async def test_a_sync_step_sees_the_run_id_in_its_instrument_tags(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    seen: dict[str, Any] = {}

    class SyncTagged(impl.Workflow):
        @step
        def only(self, ev: StartEvent) -> StopEvent:
            seen.update(active_instrument_tags.get())
            return StopEvent()

    handler = SyncTagged(timeout=10).run()
    await bounded(handler, 10)
    assert seen["llamaindex.run_id"] == handler.run_id
    assert seen["llamaindex.step.input_event"] == "StartEvent"


async def test_cancel_run_exits_the_span_of_a_running_step(
    impl: SimpleNamespace, bounded: Any, spans: Spans, events: Events
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    on_celery = impl.name == "celery_workflows" and _on_celery()
    started = asyncio.Event() if not on_celery else None

    class Sleeper(impl.Workflow):
        @step
        async def sleep_step(self, ev: StartEvent) -> StopEvent:
            if started is not None:
                started.set()
            # On Celery a cancelled run's running step is not interrupted: it ends by
            # itself (its completion is refused), so it sleeps briefly there.
            await asyncio.sleep(1.0 if on_celery else 3600)
            return StopEvent(result="unreachable")

    handler = Sleeper(timeout=20).run()
    if started is not None:
        await bounded(started.wait())
    else:
        await _until(lambda: bool(spans_open(spans, "sleep_step")))
    await bounded(handler.cancel_run())
    with pytest.raises(Exception):  # noqa: B017 - upstream raises WorkflowCancelledByUser
        await bounded(handler, 10)
    await _until(lambda: bool(spans.exited("sleep_step") or spans.dropped("sleep_step")))
    assert spans.dropped("sleep_step") == []
    assert len(spans.exited("sleep_step")) == 1
    if not on_celery:
        assert "SpanCancelledEvent" in events._names


@pytest.mark.parametrize("inside_edit", [False, True])
async def test_a_run_cancelled_while_a_step_edits_state_leaves_the_store_usable(
    impl: SimpleNamespace, bounded: Any, inside_edit: bool
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    pause = 1.0 if impl.name == "celery_workflows" and _on_celery() else 3600
    started = threading.Event()  # a Celery worker runs the step in another thread

    class Editor(impl.Workflow):
        @step
        async def edit(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state["n"] = 1
                if inside_edit:
                    started.set()
                    await asyncio.sleep(pause)
            started.set()
            await asyncio.sleep(pause)
            return StopEvent(result="unreachable")

    handler = Editor(timeout=20).run()
    await _until(started.is_set)
    await bounded(handler.cancel_run())
    with pytest.raises(Exception):  # noqa: B017 - upstream raises WorkflowCancelledByUser
        await bounded(handler, 10)

    class Counter(impl.Workflow):
        @step
        async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state["n"] = state.get("n", 0) + 1
            return StopEvent(result=await ctx.store.get("n"))

    assert await bounded(Counter(timeout=10).run(), 10) == 1


def spans_open(spans: Spans, name: str) -> list[str]:
    return [i for i in spans.open_spans if name in i]


def _on_celery() -> bool:
    from celery_workflows.runtime import local

    return local.default_runtime_override is not None


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the span")
        await asyncio.sleep(0.02)
