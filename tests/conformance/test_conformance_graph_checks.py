"""Graph checks as upstream runs them: every family, the order, errors reported together,
the validation cached until a step is added, ``@catch_error`` handlers as entry points.

Validation happens before a run reaches any runtime, so these run in-process only (on
upstream and on celery_workflows).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture(params=[pytest.param("workflows", marks=pytest.mark.upstream), "celery_workflows"])
def impl(request: pytest.FixtureRequest, get_impl: Any) -> SimpleNamespace:
    """Upstream ``workflows`` or ``celery_workflows``, in-process."""
    loaded: SimpleNamespace = get_impl(request.param)
    return loaded


def graph_error(impl: SimpleNamespace, workflow: Any) -> str:
    """The message of the WorkflowValidationError that ``workflow.run()`` raises."""
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.run()
    return str(info.value)


def ping_pong(impl: SimpleNamespace, **step_options: Any) -> Any:
    """A workflow whose ``ping`` and ``pong`` steps loop and never reach a StopEvent."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Ping(Event):
        pass

    class Pong(Event):
        pass

    class PingPong(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent | Ping:
            return StopEvent(result="done")

        @step(**step_options)
        async def ping(self, ev: Ping) -> Pong:
            return Pong()

        @step(**step_options)
        async def pong(self, ev: Pong) -> Ping:
            return Ping()

    return PingPong


def test_steps_that_never_reach_a_stop_event_are_dead_ends(impl: SimpleNamespace) -> None:
    assert graph_error(impl, ping_pong(impl)()) == (
        "Graph validation failed:\n"
        "  - [dead_end] Dead-end steps: ping, pong\n"
        "    Steps must have a path to StopEvent or InputRequiredEvent."
    )


async def test_dead_end_skipped_on_the_workflow_runs(impl: SimpleNamespace) -> None:
    workflow = ping_pong(impl)(skip_graph_checks={"dead_end"}, timeout=10)
    assert await workflow.run() == "done"


async def test_dead_end_skipped_on_the_steps_runs(impl: SimpleNamespace) -> None:
    workflow = ping_pong(impl, skip_graph_checks=["dead_end"])(timeout=10)
    assert await workflow.run() == "done"


def test_a_human_response_nobody_consumes_is_a_dangling_terminal_event(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Answer(impl.HumanResponseEvent):
        pass

    class Dangling(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent | Answer:
            return StopEvent()

    assert graph_error(impl, Dangling()) == (
        "Graph validation failed:\n"
        "  - [terminal_event] Events produced but never consumed: Answer\n"
        "    Only StopEvent and InputRequiredEvent may be terminal."
    )
    Dangling(skip_graph_checks={"terminal_event"}).validate()


def island(impl: SimpleNamespace) -> Any:
    """``spin`` is unreachable and loops on itself: two graph checks fail."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Loop(Event):
        pass

    class Island(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

        @step
        async def spin(self, ev: Loop) -> Loop:
            return Loop()

    return Island


def test_graph_check_failures_are_reported_together(impl: SimpleNamespace) -> None:
    assert graph_error(impl, island(impl)()) == (
        "Graph validation failed:\n"
        "  - [reachability] Unreachable steps: spin\n"
        "    Steps must be reachable from StartEvent or HumanResponseEvent.\n"
        "  - [dead_end] Dead-end steps: spin\n"
        "    Steps must have a path to StopEvent or InputRequiredEvent."
    )


def test_skipping_one_graph_check_reports_the_others(impl: SimpleNamespace) -> None:
    message = graph_error(impl, island(impl)(skip_graph_checks={"reachability"}))
    assert message == (
        "Graph validation failed:\n"
        "  - [dead_end] Dead-end steps: spin\n"
        "    Steps must have a path to StopEvent or InputRequiredEvent."
    )


async def test_skipping_every_failing_graph_check_runs(impl: SimpleNamespace) -> None:
    workflow = island(impl)(skip_graph_checks={"reachability", "dead_end"}, timeout=10)
    assert await workflow.run() == "done"


def test_an_unknown_workflow_graph_check_name_lists_the_valid_ones(impl: SimpleNamespace) -> None:
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        island(impl)(skip_graph_checks={"no_such_check"})
    assert str(info.value) == (
        "Unknown graph check names: no_such_check. "
        "Valid names are: dead_end, reachability, terminal_event"
    )


async def test_a_step_reached_only_through_a_catch_error_handler_is_reachable(
    impl: SimpleNamespace,
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class Recover(Event):
        pass

    class Rescued(impl.Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            raise RuntimeError("boom")

        @catch_error
        async def handler(self, ev: StepFailedEvent) -> Recover:
            return Recover()

        @step
        async def recover(self, ev: Recover) -> StopEvent:
            return StopEvent(result="recovered")

    workflow = Rescued(timeout=10)
    assert workflow.validate() is False
    assert await workflow.run() == "recovered"


def test_catch_error_scope_errors_are_reported_together(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class Guarded(impl.Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def h1(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def h2(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

        @catch_error(for_steps=["nope", "h1"])
        async def h3(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

    assert graph_error(impl, Guarded()) == (
        "Only one wildcard @catch_error handler is allowed per workflow, found 2: h1, h2\n"
        "@catch_error handler 'h3' lists unknown step 'nope' in for_steps.\n"
        "@catch_error handler 'h3' cannot cover another handler step 'h1'."
    )


def test_catch_error_max_recoveries_is_on_the_step_config(impl: SimpleNamespace) -> None:
    StepFailedEvent, StopEvent = impl.StepFailedEvent, impl.StopEvent

    @impl.catch_error(max_recoveries=3)
    async def handler(self: Any, ev: StepFailedEvent) -> StopEvent:
        return StopEvent()

    config = handler._step_config  # type: ignore[attr-defined]
    assert (config.role, config.catch_error_max_recoveries) == ("catch_error", 3)
    assert config.catch_error_for_steps is None


def test_event_flow_errors_come_before_graph_checks(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Orphan(Event):
        pass

    class Loop(Event):
        pass

    class Both(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent | Orphan:
            return StopEvent()

        @step
        async def spin(self, ev: Loop) -> Loop:
            return Loop()

    assert graph_error(impl, Both()) == (
        "The following events are produced but never consumed: Orphan"
    )


def test_a_join_across_stream_levels_is_refused(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class A(Event):
        pass

    class B(Event):
        pass

    class Join(impl.Workflow):
        @step
        async def fan(self, ev: StartEvent) -> list[A]:
            return [A()]

        @step
        async def emit_b(self, ev: StartEvent) -> B:
            return B()

        @step
        async def join(self, a: A, b: B) -> StopEvent:
            return StopEvent()

    assert graph_error(impl, Join()) == (
        "Step 'join' joins event parameters that are never produced at a common stream "
        "level: 'a' (A) is produced at the stream of step 'fan'; 'b' (B) is produced at "
        "the top level. A multi-slot join only fires when all of its inputs originate at "
        "the same level. To gate in-stream work on input from another level, use "
        "ctx.wait_for_event inside the producing step instead."
    )


async def test_a_join_within_one_stream_level_runs(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class A(Event):
        pass

    class B(Event):
        pass

    class Join(impl.Workflow):
        @step
        async def emit_a(self, ev: StartEvent) -> A:
            return A()

        @step
        async def emit_b(self, ev: StartEvent) -> B:
            return B()

        @step
        async def join(self, a: A, b: B) -> StopEvent:
            return StopEvent(result="joined")

    assert await Join(timeout=10).run() == "joined"


def test_a_fan_in_without_a_list_producer_is_refused(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        pass

    class NoStream(impl.Workflow):
        @step
        async def one(self, ev: StartEvent) -> Item:
            return Item()

        @step
        async def gather(self, items: list[Item]) -> StopEvent:
            return StopEvent()

    message = graph_error(impl, NoStream())
    assert message.startswith(
        "Step 'gather' parameter 'items' collects list[Item], but no returned-list producer"
    )


async def test_validation_is_cached_until_a_step_is_added(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Orphan(Event):
        pass

    class Growing(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

    workflow = Growing(timeout=10)
    assert await workflow.run() == "done"

    @step(workflow=Growing)
    async def extra(ev: StartEvent) -> Orphan:
        return Orphan()

    assert graph_error(impl, workflow) == (
        "The following events are produced but never consumed: Orphan"
    )

    @step(workflow=Growing)
    async def consume(ev: Orphan) -> StopEvent:
        return StopEvent(result="consumed")

    assert await workflow.run() == "done"


def test_validate_reports_human_in_the_loop_after_a_step_is_added(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    InputRequiredEvent = impl.InputRequiredEvent

    class Ask(InputRequiredEvent):
        pass

    class Later(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    workflow = Later()
    assert workflow.validate() is False

    @step(workflow=Later)
    async def ask(ev: StartEvent) -> Ask:
        return Ask()

    assert workflow.validate() is True


def test_a_step_may_name_terminal_event_in_skip_graph_checks(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Named(impl.Workflow):
        @step(skip_graph_checks=["terminal_event"])
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    assert Named().validate() is False


def test_catch_error_scopes_are_checked_even_with_validation_disabled(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class TwoWildcards(impl.Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def h1(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def h2(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

    assert graph_error(impl, TwoWildcards(disable_validation=True)) == (
        "Only one wildcard @catch_error handler is allowed per workflow, found 2: h1, h2"
    )
