"""The sweeper: publishes lost deliveries again and fails runs past their deadline.

One per worker, started and stopped with it by a Celery bootstep, whatever the pool
(prefork: in the main process; threads and solo: beside the tasks). The database decides
what is due (``RunStore.take_due``) and hands each delivery to one sweeper; the broker is
asked only whether a step's queue is empty, because a pending delivery whose queue still
holds messages is more likely queued behind busy workers than lost, and publishing it
again would only grow the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps

from ..errors import StoreUnavailableError
from ..runtime.engine import Dispatch
from ..store.base import DueDelivery, StepKey, utcnow
from .dispatch import task_name

if TYPE_CHECKING:
    from .runtime import CeleryRuntime

log = logging.getLogger("celery_workflows.sweeper")

#: Deliveries taken (and stamped) per transaction, and transactions per sweep at most.
BATCH = 200
MAX_BATCHES = 500


class Sweeper:
    """A thread that sweeps every ``sweep_interval`` seconds until stopped."""

    def __init__(self, runtime: CeleryRuntime) -> None:
        self.runtime = runtime
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start sweeping (once; again after :meth:`stop`)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cw-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the sweep under way (a worker shutting down)."""
        self._stop.set()
        if self._thread is not None:
            # Bounded: a sweep blocked on its database must not hold the worker's shutdown.
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.wait(self.runtime.sweep_interval):
                try:
                    loop.run_until_complete(self.sweep())
                except StoreUnavailableError as exc:
                    log.warning("sweep skipped: %s", exc)
                except Exception:
                    log.exception("sweep failed; trying again in %ss", self.runtime.sweep_interval)
        finally:
            loop.close()

    async def sweep(self) -> int:
        """One round: fail runs past their deadline, publish what is due again."""
        await self._expire_runs()
        served = self._served()
        if not served:
            return 0
        # Taken before the queues are read: a pending delivery published before it whose
        # queue is empty now holds no message in the queue, however many there are (a
        # flushed broker), so batches go on until none is left.
        stale_before = utcnow() - timedelta(seconds=self.runtime.stale_after)
        idle = idle_steps(self.runtime.app, served)
        total = 0
        for _ in range(MAX_BATCHES):
            due = await self.runtime.store.take_due(
                stale_before=stale_before, served=served.keys(), idle=idle, limit=BATCH
            )
            self._publish(due)
            total += len(due)
            if len(due) < BATCH:
                break
        if total:
            log.info("sweeper published %d due deliveries again", total)
        return total

    def _publish(self, due: list[DueDelivery]) -> None:
        items = [
            Dispatch(d.delivery.delivery_id, d.delivery.run_id, d.workflow_name, d.delivery.step)
            for d in due
        ]
        self.runtime.dispatcher.dispatch(items)

    def _served(self) -> dict[StepKey, str]:
        """The steps of the workflows this app serves, with their task names."""
        bindings = self.runtime.engine.bindings
        return {
            (name, step): task_name(name, step)
            for name, binding in bindings.items()
            for step in binding.specs
        }

    async def _expire_runs(self) -> None:
        # Deadlines live in the run rows, not in countdown messages: a broker that loses
        # its messages loses no deadline, and a timeout may be longer than Redis keeps
        # delayed messages invisible.
        engine = self.runtime.engine
        for run in await self.runtime.store.expired_runs(limit=100):
            binding = engine.bindings.get(run.workflow_name)
            timeout = binding.workflow._timeout if binding is not None else None
            if binding is not None and timeout is not None:
                await engine.expire(binding, run.run_id, timeout)


def idle_steps(app: Celery, served: dict[StepKey, str]) -> set[StepKey]:
    """The steps whose queue holds no message (unknown when the broker does not answer)."""
    router = app.amqp.router
    queues = {key: router.route({}, name)["queue"].name for key, name in served.items()}
    sizes: dict[str, int] = {}
    try:
        with app.pool.acquire(block=True, timeout=5) as conn:
            for queue in set(queues.values()):
                sizes[queue] = _queue_size(conn, queue)
    except Exception as exc:  # broker down: nothing can be published anyway
        log.warning("sweeper cannot read queue sizes: %s", exc)
        return set()
    return {key for key, queue in queues.items() if sizes.get(queue) == 0}


def _queue_size(conn: Any, queue: str) -> int:
    # The pooled connection's default channel: kombu opens a new one if an AMQP broker
    # closed it (a passive declare of a missing queue does). A queue that does not exist
    # holds nothing; any other error means "unknown" and propagates.
    try:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except conn.channel_errors as exc:
        if "NOT_FOUND" in str(exc) or getattr(exc, "reply_code", None) == 404:
            return 0
        raise


def sweeper_bootstep(runtime: CeleryRuntime) -> type[Any]:
    """A worker bootstep that runs ``runtime``'s sweeper for the worker's lifetime and
    lets the runtime tell the worker about step tasks registered after it started."""

    class CeleryWorkflowsSweeper(bootsteps.StartStopStep):  # type: ignore[misc]
        # Celery keeps one step per name: each runtime of an app needs its own.
        name = f"celery_workflows.sweeper.{id(runtime):x}"
        # After the pool: prefork children are forked before the sweeper thread starts.
        requires = ("celery.worker.components:Pool",)

        def start(self, worker: Any) -> None:
            runtime.running_workers.append(worker)
            runtime.sweeper.start()

        def stop(self, worker: Any) -> None:
            if worker in runtime.running_workers:
                runtime.running_workers.remove(worker)
            runtime.sweeper.stop()

        def terminate(self, worker: Any) -> None:  # a cold shutdown
            self.stop(worker)

        def shutdown(self, worker: Any) -> None:
            self.stop(worker)

    return CeleryWorkflowsSweeper
