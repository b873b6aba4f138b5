"""Resources in validation as upstream: ``run()`` loads the resource configs (a missing
file fails the run before it starts), ``validate(validate_resources=True)`` also builds
the factories. In-process, on upstream and on celery_workflows.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from pydantic import BaseModel


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


class Settings(BaseModel):
    """A model a ResourceConfig loads."""

    x: int


def configured(impl: SimpleNamespace, config_file: str) -> Any:
    """One step injected with a ResourceConfig read from ``config_file``."""
    StartEvent, StopEvent, step, resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource,
    )

    class Configured(impl.Workflow):
        @step
        async def s(
            self, ev: StartEvent, cfg: Annotated[Settings, resource.ResourceConfig(config_file)]
        ) -> StopEvent:
            return StopEvent(result=cfg.x)

    return Configured


def test_a_missing_resource_config_fails_validation_at_run(
    impl: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    workflow = configured(impl, "missing.json")(timeout=10)
    assert graph_error(impl, workflow) == (
        "Resource config validation failed:\n"
        "  - In step 's', parameter 'cfg': No such file: missing.json"
    )
    assert workflow.validate(validate_resource_configs=False) is False


async def test_a_valid_resource_config_passes_validation(
    impl: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.json").write_text(json.dumps({"x": 3}))
    workflow = configured(impl, "ok.json")(timeout=10)
    assert workflow.validate() is False
    assert await workflow.run() == 3


def test_validate_resources_builds_the_factories(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step, resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource,
    )

    def broken() -> str:
        raise RuntimeError("no credentials")

    class Factory(impl.Workflow):
        @step
        async def s(
            self, ev: StartEvent, c: Annotated[str, resource.Resource(broken)]
        ) -> StopEvent:
            return StopEvent()

    workflow = Factory()
    assert workflow.validate() is False  # factories are not built unless asked
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.validate(validate_resources=True)
    assert str(info.value) == (
        "Resource validation failed:\n  - In step 's', parameter 'c': no credentials"
    )
