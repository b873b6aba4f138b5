"""Every run records a digest of its workflow's shape (``code_version``), so an operator
can tell which shape of a workflow started a run, e.g. across a rolling upgrade."""

from __future__ import annotations

from celery_workflows import Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent
from celery_workflows.runtime.binding import bind


class Middle(Event):
    pass


class OneStep(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="done")


class TwoSteps(Workflow):
    @step
    async def only(self, ev: StartEvent) -> Middle:
        return Middle()

    @step
    async def then(self, ev: Middle) -> StopEvent:
        return StopEvent(result="done")


async def test_a_run_records_the_shape_of_the_workflow_that_started_it() -> None:
    workflow = OneStep()
    handler = workflow.run()
    assert await handler == "done"
    run = workflow.runtime.get_run(handler.run_id)
    assert run.code_version == bind(OneStep(), payloads="live").code_version
    assert len(run.code_version) == 12


def test_the_digest_changes_with_the_steps_and_not_with_the_instance() -> None:
    one = bind(OneStep(), payloads="json").code_version
    assert one == bind(OneStep(), payloads="live").code_version
    assert one != bind(TwoSteps(), payloads="json").code_version
