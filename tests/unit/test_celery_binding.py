"""The Celery runtime's registration of workflows (no broker, no worker: nothing is sent)."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from celery_workflows import CeleryRuntime, Workflow, step
from celery_workflows.events import StartEvent, StopEvent


class Timed(Workflow):
    @step(num_workers=2)
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="ok")


def test_each_workflow_instance_gets_its_own_binding_and_steps_one_task(tmp_path: Path) -> None:
    app = Celery("binding-test", broker="memory://", backend="cache+memory://")
    runtime = CeleryRuntime(app, database_url=f"sqlite:///{tmp_path / 'runs.db'}")
    instances = [Timed(runtime=runtime, timeout=i + 1) for i in range(3)]
    for instance in (*instances, instances[0]):
        binding = runtime.binding(instance)
        assert binding.workflow is instance
        assert binding.workflow._timeout == instance._timeout
    tasks = [name for name in app.tasks if name.startswith("celery_workflows.step:")]
    # Only this runtime's tasks: step tasks are not shared with other apps of the process.
    assert tasks == [f"celery_workflows.step:{instances[0].workflow_name}.only"]
    # What a new worker process registers: one workflow per name, not every instance.
    assert list(runtime._workflows.values()) == [instances[0]]


def test_the_state_limit_is_configurable_on_the_runtime_and_ten_megabytes_by_default(
    tmp_path: Path,
) -> None:
    from celery_workflows.store.sql import SqlRunStore

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    default = CeleryRuntime(Celery("default", broker="memory://"), database_url=url)
    limited = CeleryRuntime(
        Celery("limited", broker="memory://"), database_url=url, max_state_bytes=5000
    )
    for runtime, limit in ((default, 10_000_000), (limited, 5000)):
        assert isinstance(runtime.store, SqlRunStore)
        assert runtime.store.max_state_bytes == limit


def test_every_runtime_of_an_app_gets_its_own_sweeper_in_the_worker(tmp_path: Path) -> None:
    from celery.contrib.testing.worker import start_worker

    app = Celery("two-runtimes", broker="memory://", backend="cache+memory://")
    runtimes = [
        CeleryRuntime(app, database_url=f"sqlite:///{tmp_path / f'runs{i}.db'}") for i in range(2)
    ]
    with start_worker(app, pool="solo", perform_ping_check=False):
        # Both sweepers run with the worker (Celery keeps one bootstep per name).
        assert [r.sweeper._thread is not None for r in runtimes] == [True, True]
        assert all(r.running_workers for r in runtimes)
    assert [r.running_workers for r in runtimes] == [[], []]
