"""Publishing a step message subscribes the publisher to nothing (issue 13's profile).

With a Redis result backend, Celery's ``send_task`` SUBSCRIBEs the sending process to the
task's result channel unless the result is ignored (and UNSUBSCRIBEs when the discarded
``AsyncResult`` is collected): for step tasks, whose results nobody reads, round trips
to Redis on every message a caller or a worker sends.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery

from celery_workflows import CeleryRuntime, Workflow, step
from celery_workflows.events import StartEvent, StopEvent

pytestmark = pytest.mark.integration


class One(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=1)


def test_starting_runs_subscribes_to_no_result_channel(tmp_path: Path, redis_url: str) -> None:
    app = Celery("dispatch-test", broker=redis_url, backend=redis_url)
    runtime = CeleryRuntime(app, database_url=f"sqlite:///{tmp_path / 'runs.db'}")
    workflow = One(runtime=runtime)
    calls: list[str] = []
    on_task_call = app.backend.on_task_call
    app.backend.on_task_call = lambda producer, task_id: (  # type: ignore[method-assign]
        calls.append(task_id),
        on_task_call(producer, task_id),
    )
    try:
        run_ids = [workflow.run().run_id for _ in range(3)]
        assert len(set(run_ids)) == 3
        assert calls == []  # Celery's own subscription per sent task was not asked for
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("celery")
        app.close()
