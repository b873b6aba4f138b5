"""Workflow definition checks: step signatures, the event graph, run() arguments.

Signature errors surface when the class body runs (the ``@step`` decorator), start/stop
event inference when the workflow is constructed, event-graph errors when ``run()`` is
called (synchronously, before any handler exists).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


def test_workflow_without_start_event_step_fails_at_construction(impl: SimpleNamespace) -> None:
    Event, StopEvent, step = impl.Event, impl.StopEvent, impl.step

    class Middle(Event):
        pass

    class NoStart(impl.Workflow):
        @step
        async def finish(self, ev: Middle) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowConfigurationError) as info:
        NoStart()
    message = str(info.value)
    assert "At least one Event of type StartEvent must be received by any step." in message
    assert "Workflow 'NoStart' has no @step that accepts StartEvent." in message


def test_workflow_without_steps_fails_at_construction(impl: SimpleNamespace) -> None:
    class Empty(impl.Workflow):
        pass

    with pytest.raises(impl.errors.WorkflowConfigurationError, match="Workflow 'Empty' has no"):
        Empty()


def test_workflow_without_stop_event_fails_at_construction(impl: SimpleNamespace) -> None:
    Event, StartEvent, step = impl.Event, impl.StartEvent, impl.step

    class Middle(Event):
        pass

    class NoStop(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Middle:
            return Middle()

        @step
        async def middle(self, ev: Middle) -> None:
            return None

    with pytest.raises(impl.errors.WorkflowConfigurationError) as info:
        NoStop()
    message = str(info.value)
    assert "At least one Event of type StopEvent must be returned by any step." in message
    assert "Workflow 'NoStop' has no @step that returns StopEvent." in message


def test_workflow_with_two_start_event_types_fails_at_construction(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class StartA(StartEvent):
        pass

    class StartB(StartEvent):
        pass

    class TwoStarts(impl.Workflow):
        @step
        async def a(self, ev: StartA) -> StopEvent:
            return StopEvent()

        @step
        async def b(self, ev: StartB) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowConfigurationError) as info:
        TwoStarts()
    assert "Only one type of StartEvent is allowed per workflow, found 2" in str(info.value)


def test_workflow_with_two_stop_event_types_fails_at_construction(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class StopA(StopEvent):
        pass

    class StopB(StopEvent):
        pass

    class TwoStops(impl.Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopA | StopB:
            return StopA()

    with pytest.raises(impl.errors.WorkflowConfigurationError) as info:
        TwoStops()
    assert "Only one type of StopEvent is allowed per workflow, found 2" in str(info.value)


def test_event_produced_but_never_consumed_fails_at_run(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Orphan(Event):
        pass

    class Leaky(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Orphan | StopEvent:
            return StopEvent()

    workflow = Leaky()  # constructing is fine: the graph is checked by run()
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.run()
    assert "The following events are produced but never consumed: Orphan" in str(info.value)


def test_event_consumed_but_never_produced_fails_at_run(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Ghost(Event):
        pass

    class Haunted(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def wait_for_ghost(self, ev: Ghost) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Haunted().run()
    assert "The following events are consumed but never produced: Ghost" in str(info.value)


def test_step_accepting_stop_event_fails_at_run(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Eater(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def eat(self, ev: StopEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Eater().run()
    message = str(info.value)
    assert message.startswith("Step 'eat' cannot accept StopEvent.")
    assert "Use a different Event type instead." in message


def test_unreachable_step_fails_graph_validation_at_run(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Loop(Event):
        pass

    class Island(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def spin(self, ev: Loop) -> Loop | StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Island().run()
    message = str(info.value)
    assert message.startswith("Graph validation failed:")
    assert "[reachability] Unreachable steps: spin" in message


def island(impl: SimpleNamespace, **step_options: Any) -> Any:
    """A workflow whose ``spin`` step no event from StartEvent reaches."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Loop(Event):
        pass

    class Island(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

        @step(**step_options)
        async def spin(self, ev: Loop) -> Loop | StopEvent:
            return StopEvent()

    return Island


async def test_skip_graph_checks_on_the_workflow_skips_reachability(
    impl: SimpleNamespace,
) -> None:
    workflow = island(impl)(skip_graph_checks={"reachability"}, timeout=10)
    assert await workflow.run() == "done"


async def test_skip_graph_checks_on_a_step_exempts_that_step(impl: SimpleNamespace) -> None:
    workflow = island(impl, skip_graph_checks=["reachability"])(timeout=10)
    assert await workflow.run() == "done"


def test_an_unknown_graph_check_name_is_refused(impl: SimpleNamespace) -> None:
    with pytest.raises(impl.errors.WorkflowValidationError, match="Unknown graph check"):
        island(impl)(skip_graph_checks={"no_such_check"})


def test_step_without_event_parameter_fails_at_decoration(impl: SimpleNamespace) -> None:
    StopEvent, step = impl.StopEvent, impl.step

    with pytest.raises(impl.errors.WorkflowValidationError) as info:

        class NoEvent(impl.Workflow):
            @step
            async def begin(self, value: int) -> StopEvent:
                return StopEvent()

    assert ("Step signature must have at least one parameter annotated as type Event") in str(
        info.value
    )


def test_step_without_return_annotation_fails_at_decoration(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    with pytest.raises(impl.errors.WorkflowValidationError) as info:

        class NoReturn(impl.Workflow):
            @step
            async def begin(self, ev: StartEvent):  # type: ignore[no-untyped-def]
                return StopEvent()

    assert ("Return types of workflows step functions must be annotated with their type.") in str(
        info.value
    )


def test_free_function_step_without_workflow_fails_at_decoration(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent = impl.StartEvent, impl.StopEvent

    async def loose(ev: StartEvent) -> StopEvent:
        return StopEvent()

    # A function defined in a function has a dotted __qualname__; build a free one.
    loose.__qualname__ = "loose"
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        impl.step(loose)
    assert ("To decorate loose please pass a workflow class to the @step decorator.") in str(
        info.value
    )


async def test_free_function_step_registered_with_workflow_runs(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent = impl.StartEvent, impl.StopEvent

    class Host(impl.Workflow):
        pass

    async def greet(ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"hi {ev.get('name')}")

    greet.__qualname__ = "greet"
    impl.step(workflow=Host)(greet)

    assert await bounded(Host().run(name="ada")) == "hi ada"


def test_step_with_zero_workers_fails_at_decoration(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    with pytest.raises(impl.errors.WorkflowValidationError) as info:

        class Idle(impl.Workflow):
            @step(num_workers=0)
            async def begin(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

    assert "num_workers must be an integer greater than 0" in str(info.value)


def test_workflow_with_zero_concurrent_runs_fails_at_construction(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Single(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Single(num_concurrent_runs=0)
    assert "num_concurrent_runs must be an integer greater than 0 or None" in str(info.value)


def test_catch_error_handler_must_accept_step_failed_event(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, catch_error = impl.StartEvent, impl.StopEvent, impl.catch_error

    with pytest.raises(impl.errors.WorkflowValidationError) as info:

        class BadHandler(impl.Workflow):
            @catch_error
            async def rescue(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

    assert (
        "@catch_error handler 'rescue' must accept StepFailedEvent as its event parameter."
    ) in str(info.value)


def test_catch_error_with_zero_recoveries_fails(impl: SimpleNamespace) -> None:
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        impl.catch_error(max_recoveries=0)
    assert "@catch_error max_recoveries must be an integer >= 1" in str(info.value)


async def test_disable_validation_lets_an_unconsumed_event_run(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Orphan(Event):
        pass

    class Leaky(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Orphan | StopEvent:
            return StopEvent(result="ran")

    assert await bounded(Leaky(disable_validation=True).run()) == "ran"


def test_validate_reports_whether_the_workflow_uses_human_input(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    InputRequiredEvent, HumanResponseEvent = impl.InputRequiredEvent, impl.HumanResponseEvent

    class Plain(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    class Asks(impl.Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent()

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent()

    assert Plain().validate() is False
    assert Asks().validate() is True


def test_run_with_a_non_start_event_raises_value_error(impl: SimpleNamespace) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Simple(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(ValueError) as info:
        Simple().run(start_event=Event())
    assert "The 'start_event' argument must be an instance of 'StartEvent'." in str(info.value)


def test_run_kwargs_that_do_not_fit_the_start_event_raise_runtime_error(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Order(StartEvent):
        quantity: int

    class Shop(impl.Workflow):
        @step
        async def begin(self, ev: Order) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowRuntimeError) as info:
        Shop().run(colour="red")
    assert (
        "Failed creating a start event of type 'Order' with the keyword arguments: "
        "{'colour': 'red'}"
    ) in str(info.value)


def test_workflow_exposes_inferred_start_and_stop_event_classes(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Begin(StartEvent):
        pass

    class End(StopEvent):
        pass

    class Typed(impl.Workflow):
        @step
        async def only(self, ev: Begin) -> End:
            return End()

    workflow = Typed()
    assert workflow.start_event_class is Begin
    assert workflow.stop_event_class is End


def guarded(impl: SimpleNamespace, case: str) -> Any:
    """A one-step workflow whose ``@catch_error`` handlers break one rule (``case``)."""
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error
    scope = {
        "unknown-step": (["nope"], None),
        "two-wildcards": (None, None),
        "one-step-twice": (["work"], ["work"]),
        "covers-a-handler": (["h2"], ["work"]),
    }[case]
    first = catch_error if scope[0] is None else catch_error(for_steps=scope[0])
    second = catch_error if scope[1] is None else catch_error(for_steps=scope[1])

    class Guarded(impl.Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="ok")

        @first
        async def h1(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result="rescued")

        if case != "unknown-step":

            @second
            async def h2(self, ev: StepFailedEvent) -> StopEvent:
                return StopEvent(result="rescued")

    return Guarded


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-step", "@catch_error handler 'h1' lists unknown step 'nope' in for_steps."),
        (
            "two-wildcards",
            "Only one wildcard @catch_error handler is allowed per workflow, found 2: h1, h2",
        ),
        ("one-step-twice", "Step 'work' is claimed by two @catch_error handlers: 'h1' and 'h2'."),
        ("covers-a-handler", "@catch_error handler 'h1' cannot cover another handler step 'h2'."),
    ],
)
async def test_catch_error_scopes_are_validated_at_run(
    impl: SimpleNamespace, case: str, message: str
) -> None:
    workflow = guarded(impl, case)(timeout=10)
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        await workflow.run()
    assert str(info.value) == message
