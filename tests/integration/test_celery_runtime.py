"""The Celery runtime with real workers, real Redis and real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from workers import WorkerGroup, wait_until

pytestmark = pytest.mark.integration


def proj() -> Any:
    import cw_proj  # configured by the celery_env fixture's environment

    return cw_proj


async def wait_for_status(p: Any, run_id: str, status: str, timeout: float = 30.0) -> None:
    """Poll the run row until ``status`` (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while (seen := p.runtime.get_run(run_id).status) != status:
        assert time.monotonic() < deadline, f"run {run_id} still {seen!r}, not {status!r}"
        await asyncio.sleep(0.05)


async def collect(stream: Any, timeout: float = 60.0, until: type | None = None) -> list[Any]:
    """The stream's events (up to the first ``until`` event), bounded by ``timeout``."""

    async def read() -> list[Any]:
        seen = []
        async for event in stream:
            seen.append(event)
            if until is not None and isinstance(event, until):
                break
        return seen

    return await asyncio.wait_for(read(), timeout)


def test_a_run_started_from_sync_code_finishes_on_a_worker(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    handler = p.counter.run()
    assert isinstance(handler.run_id, str)
    assert handler.result(timeout=60) == 1, workers.log_tail()
    assert p.runtime.get_run(handler.run_id).status == "completed"


def test_step_tasks_have_stable_names_that_celery_inspect_shows(workers: WorkerGroup) -> None:
    p = proj()
    assert "celery_workflows.step:cw_proj.Counter.count" in p.app.tasks
    workers.start("w1")
    assert p.counter.run().result(timeout=60) == 1  # the worker is up
    registered = p.app.control.inspect(timeout=5).registered() or {}
    names = {name for tasks in registered.values() for name in tasks}
    assert "celery_workflows.step:cw_proj.Counter.count" in names
    assert "celery_workflows.step:cw_proj.FanOut.add" in names


async def test_parallel_steps_on_two_workers_keep_every_edit(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    workers.start("w2")
    handler = p.fan_out.run(n=20)
    progress = await collect(handler.stream_events(), 90)
    result = await asyncio.wait_for(handler, 90)
    assert result == {"count": 20, "total": sum(range(20))}, workers.log_tail()
    assert await handler.ctx.store.get("edits") == 20
    ticks = [ev for ev in progress if type(ev).__name__ == "Progress"]
    assert sorted(ev.message for ev in ticks) == sorted(f"tick {i}" for i in range(20))


async def test_a_waiting_run_holds_no_worker_and_resumes_from_another_process(
    workers: WorkerGroup,
) -> None:
    p = proj()
    from celery_workflows.events import HumanResponseEvent, InputRequiredEvent

    workers.start("w1", concurrency=1)
    handler = p.ask.run()
    seen = await collect(handler.stream_events(), until=InputRequiredEvent)
    assert isinstance(seen[-1], InputRequiredEvent), workers.log_tail()
    await wait_for_status(p, handler.run_id, "waiting")
    # The single worker process is free: another run completes meanwhile.
    assert await asyncio.wait_for(p.counter.run(), 60) == 1
    again = p.runtime.get_handler(handler.run_id)
    await again.send_event(HumanResponseEvent(response="ada"))
    assert await asyncio.wait_for(again, 60) == "hello ada"


def test_the_same_run_id_twice_is_one_run(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    first = p.counter.run(run_id="order-42")
    second = p.counter.run(run_id="order-42")
    assert first.run_id == second.run_id == "order-42"
    assert first.result(timeout=60) == 1
    assert second.result(timeout=60) == 1


def test_the_same_run_id_with_other_start_arguments_is_refused(workers: WorkerGroup) -> None:
    from celery_workflows.errors import RunConflictError

    p = proj()
    workers.start("w1")
    first = p.counter.run(run_id="order-43")
    with pytest.raises(RunConflictError, match="run 'order-43'"):
        p.counter.run(run_id="order-43", extra="other")
    with pytest.raises(RunConflictError, match="run 'order-43'"):
        p.features.run(run_id="order-43")
    assert first.result(timeout=60) == 1


async def test_cancel_run_ends_a_waiting_run(workers: WorkerGroup) -> None:
    p = proj()
    from celery_workflows.errors import WorkflowCancelledByUser

    workers.start("w1")
    handler = p.ask.run()
    await wait_for_status(p, handler.run_id, "waiting")
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await asyncio.wait_for(handler, 30)


def test_runs_finish_after_redis_loses_every_message(workers: WorkerGroup) -> None:
    import redis

    p = proj()
    workers.env["CW_TEST_STEP_SLEEP"] = "0.5"
    try:
        workers.start("w1")
    finally:
        del workers.env["CW_TEST_STEP_SLEEP"]
    handlers = [p.slow.run() for _ in range(6)]
    time.sleep(0.7)
    client = redis.Redis.from_url(os.environ["CW_TEST_BROKER"])
    client.flushdb()  # queued messages of every run are gone
    client.close()
    for handler in handlers:
        assert handler.result(timeout=60) == "done", workers.log_tail()
        assert asyncio.run(handler.ctx.store.get("steps")) == 3


def test_several_threads_wait_on_one_run_at_once(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    run_id = p.slow.run().run_id
    results: list[Any] = []

    def wait() -> None:
        results.append(p.runtime.get_handler(run_id).result(timeout=60))

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert results == ["done", "done", "done"]


def test_num_workers_holds_across_worker_processes(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    workers.start("w2")
    assert p.limited.run().result(timeout=90) == 1, workers.log_tail()


def test_malformed_messages_are_dropped_and_the_worker_keeps_serving(
    workers: WorkerGroup,
) -> None:
    p = proj()
    workers.start("w1", concurrency=1)
    name = "celery_workflows.step:cw_proj.Counter.count"
    p.app.send_task(name, args=[{"not": "an id"}])
    p.app.send_task(name, args=["no-such-run:no-such-delivery"])
    p.app.send_task(name, args=["pickled"], serializer="pickle")  # refused: JSON only
    assert p.counter.run().result(timeout=60) == 1
    log = workers.log_tail(200)
    assert "malformed delivery id" in log
    assert "no such delivery" in log
    assert "Refusing to deserialize untrusted content of type pickle" in log


def test_a_worker_imports_no_module_named_by_posted_data(
    celery_env: dict[str, str], tmp_path: Path
) -> None:
    # A module the worker could import (it is on the worker's path) and whose import
    # would leave a flag file: posted data names it, a worker decodes that data.
    module, flag = f"cw_trap_{uuid.uuid4().hex[:10]}", tmp_path / "imported.flag"
    trap_dir = tmp_path / "trap"
    trap_dir.mkdir()
    (trap_dir / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(flag)!r}).write_text('x')\n"
        "class Boom(Exception):\n    pass\n"
    )
    path = os.pathsep.join([str(trap_dir), celery_env["PYTHONPATH"]])
    group = WorkerGroup({**celery_env, "PYTHONPATH": path}, tmp_path)
    posted = {
        "__is_pydantic": True,
        "qualified_name": "workflows.events.WorkflowFailedEvent",
        "value": {
            "step_name": "posted",
            "exception": {"exception_type": f"{module}.Boom", "exception_message": "m"},
        },
    }
    try:
        group.start("w1", concurrency=1)
        result = proj().keep_posted.run(posted=posted).result(timeout=60)
    finally:
        group.stop_all()
    assert result["value"] == "WorkflowFailedEvent", group.log_tail()
    assert result["exception"].startswith("UnreconstructedException(")
    assert f"{module}.Boom" in result["exception"]
    assert not flag.exists()


async def test_a_run_past_its_timeout_fails_with_workflow_timeout_error(
    workers: WorkerGroup,
) -> None:
    p = proj()
    from celery_workflows.errors import WorkflowTimeoutError

    workers.start("w1")
    handler = p.sleepy.run()
    with pytest.raises(WorkflowTimeoutError, match=r"Operation timed out after 1\.5 seconds"):
        await asyncio.wait_for(handler, 30)
    assert p.runtime.get_run(handler.run_id).status == "failed"


def test_a_step_blocking_its_loop_past_the_lease_runs_once(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1", concurrency=1)
    workers.start("w2", concurrency=1)
    handler = p.blocking.run(seconds=6)  # the lease is 4 s: only the heartbeat keeps it
    assert handler.result(timeout=60) == "ok", workers.log_tail()
    bodies = Path(os.environ["CW_TEST_HOLD_DIR"]) / f"{handler.run_id}.bodies"
    assert bodies.read_text() == "x"


def test_retries_catch_error_and_a_join_run_distributed(workers: WorkerGroup) -> None:
    p = proj()
    workers.start("w1")
    workers.start("w2")
    result = p.features.run().result(timeout=60)
    assert result["tick"] == 2 and result["tock"] == -1, workers.log_tail()
    # The step ran three times and, as upstream, each retry's edit took effect: a retry
    # under a retry policy is a new invocation with its own journal (a crash re-run is
    # not: see tests/crash).
    assert result["tries"] == 3


def test_a_delivery_that_kills_its_worker_every_time_is_poison(workers: WorkerGroup) -> None:
    p = proj()
    from celery_workflows.errors import InvalidMessageError

    workers.start("w1")
    handler = p.poison.run()
    with pytest.raises(InvalidMessageError, match="is poison: 3 attempts died"):
        handler.result(timeout=90)


async def test_many_runs_at_once_over_two_worker_processes_are_each_exact(
    workers: WorkerGroup,
) -> None:
    p = proj()
    workers.start("w1")
    workers.start("w2")
    handlers = [p.fan_out.run(n=8) for _ in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*handlers), 120)
    assert results == [{"count": 8, "total": 28}] * 10, workers.log_tail()
    for handler in handlers:
        assert await handler.ctx.store.get("edits") == 8


def test_a_message_naming_another_workflow_than_the_runs_is_refused(
    workers: WorkerGroup,
) -> None:
    from celery_workflows.celery import task_name

    p = proj()
    handler = p.counter.run()  # its message waits: no worker yet
    (delivery,) = asyncio.run(p.runtime.store.list_deliveries(handler.run_id))
    # A forged message: the Poison workflow's step (it kills its worker) on Counter's run.
    p.app.send_task(task_name(p.poison.workflow_name, "die"), args=[delivery.delivery_id])
    workers.start("w1", concurrency=1)
    assert handler.result(timeout=60) == 1, workers.log_tail()
    wait_until(lambda: "refused a message" in workers.log_tail(200), 30, "the refusal log line")
    log = workers.log_tail(200)
    assert "signal 9" not in log and "WorkerLostError" not in log  # Poison's body never ran
