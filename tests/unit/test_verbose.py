"""``Workflow(verbose=True)`` prints what upstream 2.26.1 prints for the same workflow
(checked line for line against it): events added, step starts and completions, result."""

from __future__ import annotations

import pytest

from celery_workflows import Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent


class Middle(Event):
    pass


class Two(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle:
        return Middle()

    @step
    async def second(self, ev: Middle) -> StopEvent:
        return StopEvent(result="ok")


async def test_verbose_prints_each_step_start_and_completion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await Two(verbose=True, timeout=10).run() == "ok"
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[tick] add: StartEvent()",
        "[first:0] started from StartEvent",
        "[first:0] complete with Middle",
        "[tick] add: Middle()",
        "[second:0] started from Middle",
        "[result] StopEvent(result='ok')",
        "[second:0] complete with StopEvent",
    ]


async def test_a_quiet_workflow_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert await Two(timeout=10).run() == "ok"
    assert capsys.readouterr().out == ""
