"""``Workflow(verbose=True)`` prints a line per step start and completion, as upstream."""

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
        "[first:1] started from StartEvent",
        "[first:1] complete with Middle",
        "[second:1] started from Middle",
        "[second:1] complete with StopEvent",
    ]


async def test_a_quiet_workflow_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert await Two(timeout=10).run() == "ok"
    assert capsys.readouterr().out == ""
