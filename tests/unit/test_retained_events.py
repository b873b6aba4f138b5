"""Events that come before their waiter, as pure decisions: an event nothing takes is
retained in the run's meta (bounded, oldest first), and a wait registered later takes the
oldest retained event that answers it in the same transaction. No store here."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from celery_workflows import Context, Workflow, step
from celery_workflows.events import (
    Event,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    UnhandledEvent,
)
from celery_workflows.runtime.binding import Binding, bind
from celery_workflows.runtime.codec import event_type_name
from celery_workflows.runtime.interventions import on_event_sent_in
from celery_workflows.runtime.retained import (
    RETAINED_LIMIT,
    retain,
    retained_count,
    take_retained,
)
from celery_workflows.runtime.routing import Output
from celery_workflows.runtime.sends import on_events_sent
from celery_workflows.runtime.transitions import StepEnd, on_step_end
from celery_workflows.runtime.waits import waiter_record
from celery_workflows.runtime.writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    SetMeta,
    SetStatus,
)
from celery_workflows.store.base import DeliveryRecord, RunRecord, RunStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Ping(Event):
    """No step takes it: only a wait does."""

    who: str = ""


class Asker(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ping = await ctx.wait_for_event(Ping)
        return StopEvent(result=ping.who)


@pytest.fixture
def binding() -> Binding:
    return bind(Asker(disable_validation=True), payloads="json")


def run_record(meta: dict[str, Any] | None = None, status: RunStatus = "running") -> RunRecord:
    return RunRecord(
        run_id="r1",
        workflow_name="asker",
        status=status,
        state={},
        meta=meta or {},
        result=None,
        error=None,
        code_version="",
        idempotency_key=None,
        created_at=NOW,
        updated_at=NOW,
        deadline_at=None,
    )


def delivery(binding: Binding, delivery_id: str = "r1:d1") -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=delivery_id,
        run_id="r1",
        step="ask",
        event=binding.codec.encode_event(StartEvent()),
        status="running",
        attempt=1,
        journal_id=delivery_id,
        parent_id=None,
        extra={},
        error=None,
        not_before=None,
        lease_expires_at=None,
        published_at=None,
        created_at=NOW,
        updated_at=NOW,
    )


def waiting_end(
    binding: Binding,
    d: DeliveryRecord,
    *,
    requirements: dict[str, Any] | None = None,
    timeout: float | None = 30,
) -> StepEnd:
    waiter = waiter_record(
        waiter_id="w",
        step=d.step,
        journal_id=d.journal_id,
        delivery_id=d.delivery_id,
        event=d.event,
        waiting_for=event_type_name(Ping),
        requirements=requirements,
        timeout=timeout,
    )
    ask = InputRequiredEvent(prefix="ping?")
    return StepEnd(StartEvent(), waiter=waiter, waiter_event=ask, journal_id=d.journal_id)


def of_type(decision: Decision, kind: type[Any]) -> list[Any]:
    return [w for w in decision.writes if isinstance(w, kind)]


def meta_of(decision: Decision) -> dict[str, Any]:
    meta: dict[str, Any] = of_type(decision, SetMeta)[-1].meta
    return meta


def sent_in(binding: Binding, meta: dict[str, Any], *events: Event) -> dict[str, Any]:
    """Send each event into a run with ``meta``; the meta after the last."""
    for i, event in enumerate(events):
        meta = meta_of(on_event_sent_in(binding, run_record(meta), [], event, None, f"r1:x{i}"))
    return meta


def test_retain_keeps_the_newest_events_oldest_first_and_no_input_request() -> None:
    meta: dict[str, Any] = {}
    for n in range(RETAINED_LIMIT + 5):
        retain(meta, Ping(who=str(n)), {"n": n})
    retain(meta, InputRequiredEvent(prefix="?"), {"n": "ask"})
    assert retained_count(meta) == RETAINED_LIMIT
    assert [e["event"]["n"] for e in meta["retained"]][:2] == [5, 6]
    assert meta["retained"][-1]["event"] == {"n": RETAINED_LIMIT + 4}


def test_take_retained_takes_the_oldest_that_answers_and_leaves_the_rest() -> None:
    meta: dict[str, Any] = {}
    for n in range(3):
        retain(meta, Ping(who=str(n)), {"n": n})
    name = event_type_name(Ping)
    assert take_retained(meta, name, lambda p: p["n"] > 0) == {"n": 1}
    assert take_retained(meta, "other.Type", lambda p: True) is None
    assert [e["event"]["n"] for e in meta["retained"]] == [0, 2]
    assert take_retained(meta, name, lambda p: True) == {"n": 0}
    assert take_retained(meta, name, lambda p: True) == {"n": 2}
    assert "retained" not in meta


def test_an_event_sent_in_that_nothing_takes_is_reported_and_retained(binding: Binding) -> None:
    decision = on_event_sent_in(binding, run_record(), [], Ping(who="ada"), None, "r1:x")
    (stream,) = of_type(decision, AppendStream)
    reported = binding.codec.decode_event(stream.payload)
    assert isinstance(reported, UnhandledEvent) and reported.event_type == "Ping"
    assert not of_type(decision, SetStatus) and not decision.publish
    [kept] = meta_of(decision)["retained"]
    assert kept["type"] == event_type_name(Ping)
    assert binding.codec.decode_event(kept["event"]) == Ping(who="ada")


def test_a_wait_registered_after_its_answer_came_resumes_at_once(binding: Binding) -> None:
    meta = sent_in(binding, {}, Ping(who="ada"))
    d = delivery(binding)
    decision = on_step_end(binding, run_record(meta), [d], d, waiting_end(binding, d), now=NOW)
    (added,) = of_type(decision, AddDeliveries)
    # The resume only: no timeout delivery, since the wait is over.
    [resume] = added.deliveries
    assert decision.publish == (resume,)
    assert (resume.step, resume.parent_id) == ("ask", d.delivery_id)
    assert resume.journal_id == d.journal_id
    assert binding.codec.decode_event(resume.extra["resolved"]["w"]) == Ping(who="ada")
    after = meta_of(decision)
    assert after.get("waiters") == [] and "retained" not in after
    # Not left waiting; the waiter event is streamed once, as for any wait.
    assert SetStatus("waiting") not in decision.writes
    assert [w.key for w in of_type(decision, AppendStream)] == ["r1:d1:waiter:w"]
    # Decided again (a replayed completion), the resume has the same id.
    again = on_step_end(binding, run_record(meta), [d], d, waiting_end(binding, d), now=NOW)
    assert of_type(again, AddDeliveries)[0].deliveries == (resume,)


def test_a_wait_takes_the_oldest_retained_event_that_meets_its_requirements(
    binding: Binding,
) -> None:
    meta = sent_in(binding, {}, Ping(who="bob"), Ping(who="ada"), Ping(who="ada"))
    first_ada = meta["retained"][1]["event"]
    d = delivery(binding)
    end = waiting_end(binding, d, requirements={"who": "ada"})
    decision = on_step_end(binding, run_record(meta), [d], d, end, now=NOW)
    [resume] = of_type(decision, AddDeliveries)[0].deliveries
    assert resume.extra["resolved"]["w"] == first_ada
    left = [binding.codec.decode_event(e["event"]) for e in meta_of(decision)["retained"]]
    assert left == [Ping(who="bob"), Ping(who="ada")]


def test_a_wait_with_no_retained_answer_is_registered_and_the_run_waits(
    binding: Binding,
) -> None:
    meta = sent_in(binding, {}, Ping(who="bob"))
    d = delivery(binding)
    end = waiting_end(binding, d, requirements={"who": "ada"})
    decision = on_step_end(binding, run_record(meta), [d], d, end, now=NOW)
    [timeout] = of_type(decision, AddDeliveries)[0].deliveries
    assert timeout.extra["timeout_of"]["waiter_id"] == "w"
    after = meta_of(decision)
    assert [w["waiter_id"] for w in after["waiters"]] == ["w"]
    assert retained_count(after) == 1
    assert SetStatus("waiting") in decision.writes


def test_an_event_a_step_sent_that_nothing_takes_answers_a_later_wait(binding: Binding) -> None:
    sent = on_events_sent(binding, run_record(), "r1:other", ((0, Output(Ping(who="x"))),), ())
    meta = meta_of(sent)
    assert retained_count(meta) == 1
    # No UnhandledEvent for a step's own sends (as before).
    assert not of_type(sent, AppendStream)
    d = delivery(binding)
    end = dataclasses.replace(waiting_end(binding, d), waiter_event=None)
    decision = on_step_end(binding, run_record(meta), [d], d, end, now=NOW)
    [resume] = of_type(decision, AddDeliveries)[0].deliveries
    assert binding.codec.decode_event(resume.extra["resolved"]["w"]) == Ping(who="x")


def test_an_event_a_waiter_takes_is_not_retained(binding: Binding) -> None:
    d = delivery(binding)
    meta = meta_of(on_step_end(binding, run_record(), [d], d, waiting_end(binding, d), now=NOW))
    decision = on_event_sent_in(binding, run_record(meta, "waiting"), [], Ping(), None, "r1:x")
    assert retained_count(meta_of(decision)) == 0
    assert SetStatus("running") in decision.writes
