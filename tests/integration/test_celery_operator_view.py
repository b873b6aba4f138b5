"""What an operator sees of step tasks in Celery's own tools (real worker processes).

Flower and ``celery inspect`` show a task's name, id and arguments: the run a step task
belongs to must be readable there, and a message in the shape sent before the run id was
added (the delivery id alone) must still be run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from workers import HERE, WorkerGroup, wait_until

pytestmark = pytest.mark.integration


def proj() -> Any:
    import cw_proj  # configured by the celery_env fixture's environment

    return cw_proj


def test_celery_inspect_active_shows_the_run_id_of_a_step_task(workers: WorkerGroup) -> None:
    from celery_workflows.celery import task_name

    p = proj()
    workers.start("w1", concurrency=1)
    handler = p.blocking.run(seconds=10)  # a step that holds its worker for 10 s
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        active = p.app.control.inspect(timeout=2).active() or {}
        found[:] = [task for tasks in active.values() for task in tasks]
        return bool(found)

    wait_until(seen, 30, "the step task to be active")
    (task,) = found
    assert task["name"] == task_name(p.blocking.workflow_name, "block")
    assert task["kwargs"] == {"run_id": handler.run_id}
    assert task["args"][0] == task["id"]  # the delivery id, the task id too
    # The command line an operator types shows the same.
    shown = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "cw_proj", "inspect", "active", "--json"],
        cwd=HERE, env=workers.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert handler.run_id in shown.stdout
    assert json.loads(shown.stdout.strip().splitlines()[-1])  # JSON, one line per answer
    assert handler.result(timeout=60) == "ok", workers.log_tail()


def test_a_message_without_the_run_id_keyword_is_still_run(workers: WorkerGroup) -> None:
    from celery_workflows.celery import task_name

    p = proj()
    handler = p.counter.run()  # its message waits: no worker yet
    p.app.control.purge()  # drop it: the same delivery goes out in the old shape below
    (delivery,) = asyncio.run(p.runtime.store.list_deliveries(handler.run_id))
    p.app.send_task(
        task_name(p.counter.workflow_name, "count"),
        args=[delivery.delivery_id],
        task_id=delivery.delivery_id,
    )
    workers.start("w1", concurrency=1)
    assert handler.result(timeout=60) == 1, workers.log_tail()
