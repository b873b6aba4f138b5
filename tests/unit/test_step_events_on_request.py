"""Step events written only once a reader asks, and the run page's timeline shapes.

The in-process runtime writes StepStateChanged for every run; here its engine is told
not to, as a Celery runtime's is by default, so the on-request path runs without servers.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from celery_workflows import Context, Workflow, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
)
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.runtime.step_events import STEP_EVENTS_KEY, request_step_events
from celery_workflows.server.timeline import delivery_entry, error_summary, event_name
from celery_workflows.store.base import DeliveryRecord


class Ask(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(HumanResponseEvent, waiter_event=InputRequiredEvent())
        return StopEvent(result=answer.response)


def quiet_runtime() -> LocalRuntime:
    runtime = LocalRuntime()
    runtime.engine.step_events = False  # as on Celery: only when a reader asks
    return runtime


async def stored_events(runtime: LocalRuntime, run_id: str) -> list[Any]:
    return [entry.event for entry in await runtime.store.read_stream(run_id)]


async def test_a_run_nobody_asks_writes_no_step_events_and_no_flag() -> None:
    runtime = quiet_runtime()
    handler = Ask(runtime=runtime, timeout=10).run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            await handler.send_event(HumanResponseEvent(response="ada"))
    assert await asyncio.wait_for(handler, 10) == "ada"
    events = await stored_events(runtime, handler.run_id)
    assert not [e for e in events if isinstance(e, StepStateChanged)]
    assert STEP_EVENTS_KEY not in runtime.get_run(handler.run_id).meta


async def test_a_reader_of_internal_events_gets_each_later_step_end_as_upstream() -> None:
    runtime = quiet_runtime()
    handler = Ask(runtime=runtime, timeout=10).run()
    seen = []
    async for event in handler.stream_events(expose_internal=True):
        seen.append(event)
        if isinstance(event, InputRequiredEvent):
            assert runtime.get_run(handler.run_id).meta[STEP_EVENTS_KEY] is True
            await handler.send_event(HumanResponseEvent(response="bo"))
    changes = [e for e in seen if isinstance(e, StepStateChanged)]
    assert [(e.name, e.step_state) for e in changes[-2:]] == [
        ("ask", StepState.RUNNING),
        ("ask", StepState.NOT_RUNNING),
    ]
    # A step's end names its events as upstream does: str(type(...)).
    assert changes[-1].output_event_name == str(StopEvent)
    assert changes[-1].input_event_name == str(StartEvent)
    assert isinstance(seen[-1], StopEvent) and seen[-1].result == "bo"
    # A finished run is not flagged again (nothing more will be written).
    other = Ask(runtime=runtime, timeout=10).run()
    await other.cancel_run()
    assert await request_step_events(runtime.store, other.run_id) is False
    assert STEP_EVENTS_KEY not in runtime.get_run(other.run_id).meta


def _delivery(**changes: Any) -> DeliveryRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = dict(
        delivery_id="r:1", run_id="r", step="parse", event={"qualified_name": "m.Fetched"},
        status="done", attempt=3, journal_id="r:1", parent_id=None, extra={}, error=None,
        not_before=None, lease_expires_at=None, published_at=None, created_at=now,
        updated_at=now,
    )  # fmt: skip
    fields.update(changes)
    return DeliveryRecord(**fields)


def test_the_timeline_names_events_errors_and_retries_without_rebuilding_anything() -> None:
    class Fetched(Event):
        pages: int

    assert event_name(Fetched(pages=1)) == "Fetched"
    assert event_name({"qualified_name": "os.system", "value": {}}) == "system"
    assert event_name(42) == "Event"
    assert error_summary({"exception_type": "builtins.ValueError", "exception_message": "x"}) == {
        "type": "ValueError",
        "message": "x",
    }
    assert error_summary({"kind": "timeout", "message": "late"}) == {
        "type": "timeout",
        "message": "late",
    }
    assert error_summary(None) is None
    retried = {"count": 2, "last_error": {"exception_type": "ConnectionError"}}
    entry = delivery_entry(_delivery(extra={"retry": retried, "timeout_of": {"waiter_id": "w"}}))
    assert entry["event"] == "Fetched" and entry["attempt"] == 3 and entry["wait_timeout"]
    assert entry["retry"]["count"] == 2
    assert entry["retry"]["last_error"] == {"type": "ConnectionError", "message": ""}
    assert delivery_entry(_delivery())["retry"] is None
