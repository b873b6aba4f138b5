"""The run's transitions as pure decisions: given a run, its open deliveries, a delivery
and what happened, each returns the writes of one transaction. No store here."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celery_workflows import Context, Workflow, catch_error, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from celery_workflows.runtime.binding import Binding, bind
from celery_workflows.runtime.codec import event_type_name
from celery_workflows.runtime.failures import on_step_failed, poison_reason
from celery_workflows.runtime.interventions import TimedOut, on_event_sent_in, on_halt
from celery_workflows.runtime.routing import Output
from celery_workflows.runtime.sends import on_collect, on_events_sent
from celery_workflows.runtime.state import collect_journal_id, send_journal_id
from celery_workflows.runtime.step_context import CollectNeeded
from celery_workflows.runtime.transitions import StepEnd, on_step_end, reads_open_deliveries
from celery_workflows.runtime.waits import WaitTimeout, on_timeout_claimed, waiter_record
from celery_workflows.runtime.writes import (
    AddDeliveries,
    AppendStream,
    Decision,
    FinishDelivery,
    PutJournal,
    RescheduleDelivery,
    SetMeta,
    SetStatus,
)
from celery_workflows.store.base import DeliveryRecord, JournalMark, RunRecord, RunStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Middle(Event):
    n: int = 0


class Answer(Event):
    text: str = ""


class Chain(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle:
        return Middle(n=1)

    @step(retry_policy=retry_policy(wait=wait_fixed(7), stop=stop_after_attempt(3)))
    async def second(self, ev: Middle) -> StopEvent:
        return StopEvent(result="ok")

    @step
    async def asks(self, ctx: Context, ev: Answer) -> StopEvent:
        return StopEvent(result="answered")


class Guarded(Workflow):
    @step
    async def risky(self, ev: StartEvent) -> StopEvent:
        raise RuntimeError("boom")

    @catch_error(max_recoveries=1)
    async def rescue(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result="rescued")


@pytest.fixture
def chain() -> Binding:
    return bind(Chain(), payloads="json")


def run_record(meta: dict[str, Any] | None = None, status: RunStatus = "running") -> RunRecord:
    return RunRecord(
        run_id="r1",
        workflow_name="chain",
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


def delivery(
    binding: Binding, step_name: str, event: Event, delivery_id: str = "r1:d1", **extra: Any
) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=delivery_id,
        run_id="r1",
        step=step_name,
        event=binding.codec.encode_event(event),
        status="running",
        attempt=1,
        journal_id=delivery_id,
        parent_id=None,
        extra=dict(extra),
        error=None,
        not_before=None,
        lease_expires_at=None,
        published_at=None,
        created_at=NOW,
        updated_at=NOW,
    )


def of_type(decision: Decision, kind: type[Any]) -> list[Any]:
    return [w for w in decision.writes if isinstance(w, kind)]


def test_a_returned_event_becomes_a_published_delivery_and_the_delivery_is_done(
    chain: Binding,
) -> None:
    d = delivery(chain, "first", StartEvent())
    decision = on_step_end(
        chain, run_record(), [], d, StepEnd(StartEvent(), result=Middle(n=1)), now=NOW
    )
    (added,) = of_type(decision, AddDeliveries)
    assert [n.step for n in added.deliveries] == ["second"]
    assert decision.publish == added.deliveries
    assert of_type(decision, FinishDelivery) == [FinishDelivery(d.fence, "done")]
    assert not of_type(decision, SetStatus) and not decision.finished
    # The same end decided twice gives the same delivery ids (a replay inserts nothing new).
    again = on_step_end(
        chain, run_record(), [], d, StepEnd(StartEvent(), result=Middle(n=1)), now=NOW
    )
    assert of_type(again, AddDeliveries) == [added]


def test_a_stop_event_completes_the_run_and_publishes_nothing(chain: Binding) -> None:
    d = delivery(chain, "second", Middle(n=1))
    stop = StopEvent(result="ok")
    decision = on_step_end(chain, run_record(), [], d, StepEnd(Middle(n=1), result=stop), now=NOW)
    assert decision.finished and decision.stop is stop and decision.publish == ()
    (status,) = of_type(decision, SetStatus)
    assert status.status == "completed" and status.result["value"]["result"] == "ok"
    assert of_type(decision, AppendStream)[-1].key == "r1:stop"


def test_a_step_that_returns_a_non_event_fails_the_run_naming_run_and_step(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    decision = on_step_end(chain, run_record(), [], d, StepEnd(StartEvent(), result=42), now=NOW)
    (status,) = of_type(decision, SetStatus)
    assert status.status == "failed" and status.error["step"] == "first"
    assert "returned int instead of an Event" in status.error["exception_message"]
    assert "'r1'" in status.error["exception_message"]
    assert of_type(decision, FinishDelivery)[0].status == "failed"


def test_a_failure_under_a_retry_policy_reschedules_the_delivery_with_its_count(
    chain: Binding,
) -> None:
    d = delivery(chain, "second", Middle(n=1))
    decision = on_step_failed(chain, run_record(), d, ValueError("flaky"), now=NOW)
    (reschedule,) = decision.writes
    assert isinstance(reschedule, RescheduleDelivery)
    assert reschedule.not_before == NOW + timedelta(seconds=7)
    assert reschedule.extra["retry"]["count"] == 1
    assert reschedule.extra["retry"]["last_error"]["exception_message"] == "flaky"
    assert [p.delivery_id for p in decision.publish] == [d.delivery_id]
    assert not decision.finished


def test_the_last_allowed_failure_fails_the_run(chain: Binding) -> None:
    retry = {"count": 5, "first_failed_at": (NOW - timedelta(seconds=20)).isoformat()}
    d = delivery(chain, "second", Middle(n=1), retry=retry)
    decision = on_step_failed(chain, run_record(), d, ValueError("flaky"), now=NOW)
    assert decision.finished
    assert of_type(decision, SetStatus)[0].status == "failed"
    assert of_type(decision, AppendStream)[0].key == "r1:failed"


def test_a_catch_error_handler_gets_the_failure_until_its_budget_is_spent() -> None:
    guarded = bind(Guarded(), payloads="json")
    d = delivery(guarded, "risky", StartEvent())
    run = run_record()
    first = on_step_failed(guarded, run, d, RuntimeError("boom"), now=NOW)
    assert [p.step for p in first.publish] == ["rescue"]
    (meta,) = of_type(first, SetMeta)
    assert meta.meta["recoveries"] == {"rescue": 1}
    assert run.meta == {}  # the decision changed a copy
    spent = on_step_failed(guarded, run_record(meta.meta), d, RuntimeError("boom"), now=NOW)
    assert spent.finished and spent.publish == ()


def waiting_end(binding: Binding, d: DeliveryRecord, timeout: float | None) -> StepEnd:
    waiter = waiter_record(
        waiter_id="w",
        step=d.step,
        journal_id=d.journal_id,
        delivery_id=d.delivery_id,
        event=d.event,
        waiting_for=event_type_name(Answer),
        timeout=timeout,
    )
    ask = InputRequiredEvent(prefix="?")
    return StepEnd(StartEvent(), waiter=waiter, waiter_event=ask)


def test_a_wait_registers_its_waiter_and_a_timeout_delivery_due_later(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    end = waiting_end(chain, d, timeout=30)
    assert reads_open_deliveries(run_record(), d, end)
    decision = on_step_end(chain, run_record(), [d], d, end, now=NOW)
    (meta,) = of_type(decision, SetMeta)
    assert [w["waiter_id"] for w in meta.meta["waiters"]] == ["w"]
    (added,) = of_type(decision, AddDeliveries)
    (timeout,) = added.deliveries
    assert timeout.not_before == NOW + timedelta(seconds=30) and timeout.step == "first"
    assert timeout.extra["timeout_of"] == {"waiter_id": "w", "journal_id": d.journal_id}
    # Only the waiter (and its own timeout) is left: the run is waiting.
    assert SetStatus("waiting") in decision.writes
    assert [w.key for w in of_type(decision, AppendStream)] == ["r1:d1:waiter:w"]


def test_a_wait_beside_other_open_work_leaves_the_run_running(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    other = delivery(chain, "second", Middle(n=1), delivery_id="r1:d2")
    decision = on_step_end(chain, run_record(), [d, other], d, waiting_end(chain, d, None), now=NOW)
    assert not of_type(decision, SetStatus)
    assert of_type(decision, AddDeliveries)[0].deliveries == ()


def test_a_claimed_timeout_marks_its_waiter_once_and_ends_if_the_wait_did(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    end = waiting_end(chain, d, timeout=5)
    waits = on_step_end(chain, run_record(), [d], d, end, now=NOW)
    meta = of_type(waits, SetMeta)[0].meta
    (timeout_new,) = of_type(waits, AddDeliveries)[0].deliveries
    timeout = delivery(chain, "first", StartEvent(), timeout_new.delivery_id, **timeout_new.extra)
    assert WaitTimeout.of(timeout) == WaitTimeout("w", d.journal_id)

    marked = on_timeout_claimed(run_record(meta, "waiting"), timeout)
    assert marked.answer is False
    (marked_meta,) = of_type(marked, SetMeta)
    assert marked_meta.meta["waiters"][0]["timing_out"] == timeout.delivery_id
    # An attempt that died after marking: the next one finds its own mark, writes nothing.
    again = on_timeout_claimed(run_record(marked_meta.meta, "waiting"), timeout)
    assert again == Decision(answer=False)
    # The wait was answered before its timeout came due: the delivery just ends.
    answered = on_timeout_claimed(run_record({"waiters": []}), timeout)
    assert answered.answer is True
    assert answered.writes == (FinishDelivery(timeout.fence, "done"),)


def test_a_timeout_deliverys_completion_removes_its_waiter(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    end = waiting_end(chain, d, timeout=5)
    meta = of_type(on_step_end(chain, run_record(), [d], d, end, now=NOW), SetMeta)[0].meta
    timeout = delivery(
        chain,
        "first",
        StartEvent(),
        "r1:t",
        timeout_of={"waiter_id": "w", "journal_id": d.journal_id},
    )
    meta["waiters"][0]["timing_out"] = "r1:t"
    done = on_step_end(
        chain, run_record(meta), [], timeout, StepEnd(StartEvent(), result=StopEvent()), now=NOW
    )
    assert of_type(done, SetMeta)[0].meta["waiters"] == []


def test_collect_answers_are_journaled_apart_from_state_edits(chain: Binding) -> None:
    d = delivery(chain, "second", Middle(n=1))
    need = CollectNeeded(0, "default", Middle(n=1), [Middle, Middle])
    first = on_collect(chain, run_record(), d, need, None)
    assert first.answer is None
    (meta, journal) = first.writes
    assert isinstance(meta, SetMeta) and len(meta.meta["collect"]["second|default"]) == 1
    assert journal == PutJournal(collect_journal_id(d.journal_id), 0, None)
    assert journal.journal_id != d.journal_id
    need2 = CollectNeeded(0, "default", Middle(n=2), [Middle, Middle])
    second = on_collect(chain, run_record(meta.meta), d, need2, None)
    assert [e.n for e in second.answer] == [1, 2]
    assert of_type(second, SetMeta)[0].meta["collect"]["second|default"] == []
    # A re-run of the invocation gets the journaled answer, and writes nothing.
    mark = JournalMark(journal.journal_id, 0, of_type(second, PutJournal)[0].result)
    replay = on_collect(chain, run_record(), d, need2, mark)
    assert replay.writes == () and [e.n for e in replay.answer] == [1, 2]


def test_an_event_sent_in_resumes_a_waiting_run(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    meta = of_type(
        on_step_end(chain, run_record(), [d], d, waiting_end(chain, d, None), now=NOW), SetMeta
    )[0].meta
    decision = on_event_sent_in(
        chain, run_record(meta, "waiting"), [], Answer(text="hi"), None, "r1:ext"
    )
    assert SetStatus("running") in decision.writes
    assert {p.step for p in decision.publish} == {"first", "asks"}
    assert of_type(decision, SetMeta)[0].meta["waiters"] == []


def test_an_event_nothing_takes_is_reported_and_a_finished_run_takes_nothing(
    chain: Binding,
) -> None:
    lost = on_event_sent_in(chain, run_record(), [], HumanResponseEvent(response="x"), None, "p")
    (report,) = of_type(lost, AppendStream)
    assert report.payload["value"]["event_type"] == "HumanResponseEvent"
    assert report.payload["value"]["idle"] is True
    done = on_event_sent_in(chain, run_record(status="completed"), [], Answer(), None, "p")
    assert done == Decision()


def test_cancel_and_deadline_end_a_going_run_once(chain: Binding) -> None:
    running = delivery(chain, "second", Middle(n=1))
    late = on_halt(run_record(), [running], TimedOut(3.0), chain.codec)
    (status,) = of_type(late, SetStatus)
    assert status.status == "failed" and status.error["kind"] == "timeout"
    assert "Currently active steps: second" in status.error["message"]
    cancelled = on_halt(run_record(), [], "cancelled", chain.codec)
    assert of_type(cancelled, SetStatus)[0].status == "cancelled" and cancelled.answer is True
    assert on_halt(run_record(status="cancelled"), [], "cancelled", chain.codec).answer is False


def test_a_delivery_whose_attempts_keep_dying_is_poison_retries_not_counted(
    chain: Binding,
) -> None:
    from dataclasses import replace

    d = delivery(chain, "second", Middle(n=1))
    assert poison_reason(replace(d, attempt=3), max_crashes=3) is None  # 2 died
    reason = poison_reason(replace(d, attempt=4), max_crashes=3)
    assert reason is not None and "3 attempts died" in reason
    retried = replace(d, attempt=4, extra={"retry": {"count": 1}})
    assert poison_reason(retried, max_crashes=3) is None  # one was a failure, not a death
    assert poison_reason(replace(d, attempt=99), max_crashes=None) is None


class Left(Event):
    pass


class Right(Event):
    pass


class Joined(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Left | Right:
        return Left()

    @step
    async def pair(self, left: Left, right: Right) -> StopEvent:
        return StopEvent(result="paired")


def test_events_sent_are_journaled_and_a_journaled_send_is_not_routed_again() -> None:
    joined = bind(Joined(), payloads="json")
    sends = [(0, Output(Left())), (1, Output(Right()))]
    first = on_events_sent(joined, run_record(), "r1:d1", sends, done=())
    assert [w.index for w in of_type(first, PutJournal)] == [0, 1]
    assert {w.journal_id for w in of_type(first, PutJournal)} == {send_journal_id("r1:d1")}
    assert [p.step for p in first.publish] == ["pair"]  # the join fired once
    # Left was committed before a crash, Right was not: the re-run routes Right only, so
    # the join's buffer holds no second Left.
    meta_after_left = of_type(on_events_sent(joined, run_record(), "r1:d1", sends[:1], ()), SetMeta)
    rerun = on_events_sent(joined, run_record(meta_after_left[0].meta), "r1:d1", sends, done={0})
    assert [w.index for w in of_type(rerun, PutJournal)] == [1]
    assert [p.step for p in rerun.publish] == ["pair"]
    assert of_type(rerun, SetMeta)[0].meta["joins"]["pair"] == {"left": [], "right": []}


def test_events_sent_just_before_a_wait_commit_with_the_waiter(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    waiting = waiting_end(chain, d, None)
    end = dataclasses.replace(waiting, sent=((0, Output(Middle(n=5))),), journal_id=d.journal_id)
    decision = on_step_end(chain, run_record(), [d], d, end, now=NOW)
    assert [p.step for p in decision.publish] == ["second"]
    (meta,) = of_type(decision, SetMeta)[-1:]
    assert [w["waiter_id"] for w in meta.meta["waiters"]] == ["w"]
    assert SetStatus("waiting") not in decision.writes  # the sent event is work to do
    assert of_type(decision, PutJournal) == [PutJournal(send_journal_id(d.journal_id), 0)]


def test_a_stop_event_sent_ends_the_run_whatever_the_step_did_next(chain: Binding) -> None:
    d = delivery(chain, "first", StartEvent())
    stop = StopEvent(result="sent")
    end = StepEnd(StartEvent(), error=RuntimeError("later"), sent=((0, Output(stop)),))
    decision = on_step_end(chain, run_record(), [], d, end, now=NOW)
    assert decision.finished and decision.stop is stop
    assert of_type(decision, SetStatus)[0].status == "completed"


class Measured(Event):
    value: float


class Measuring(Workflow):
    @step
    async def measure(self, ev: StartEvent) -> Measured | None:
        return None

    @step
    async def report(self, ev: Measured) -> StopEvent:
        return StopEvent()


def test_a_sent_event_that_cannot_be_stored_fails_the_step_naming_run_and_step() -> None:
    measuring = bind(Measuring(), payloads="json")
    d = delivery(measuring, "measure", StartEvent())
    sent = ((0, Output(Measured(value=float("nan")))),)
    end = StepEnd(StartEvent(), sent=sent, journal_id=d.journal_id)
    decision = on_step_end(measuring, run_record(), [], d, end, now=NOW)
    (status,) = of_type(decision, SetStatus)
    assert status.status == "failed"
    assert "run 'r1' step 'measure'" in status.error["exception_message"]
    assert not of_type(decision, AddDeliveries)  # nothing of what it left is written
