"""What runs inside a Celery worker process for each step message: the task body."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..store.base import DeliveryRecord
from .heartbeat import Heartbeats

if TYPE_CHECKING:
    from .runtime import CeleryRuntime

log = logging.getLogger("celery_workflows.worker")

MAX_ID_LENGTH = 300


class Worker:
    """The task-side half of a :class:`~celery_workflows.celery.CeleryRuntime`."""

    def __init__(self, runtime: CeleryRuntime) -> None:
        self.runtime = runtime
        # One loop per thread that runs tasks (the prefork and solo pools: one thread per
        # process; the threads pool: several).
        self._local = threading.local()
        self._heartbeats = Heartbeats(runtime)

    def loop(self) -> asyncio.AbstractEventLoop:
        """This thread's event loop, kept across tasks (cached resources stay valid)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
        return loop

    def step_task(
        self, delivery_id: Any, max_running: int | None = None, workflow_name: str | None = None
    ) -> None:
        """Body of every step task: execute one delivery by id."""
        if not isinstance(delivery_id, str) or not 0 < len(delivery_id) <= MAX_ID_LENGTH:
            # Nothing else comes from the broker: a malformed id is logged and dropped.
            log.error("rejected a step message with a malformed delivery id: %r", delivery_id)
            return
        execute = self.runtime.engine.execute(
            delivery_id, max_running=max_running, workflow_name=workflow_name
        )
        self.loop().run_until_complete(execute)

    @contextmanager
    def heartbeat(self, delivery: DeliveryRecord) -> Iterator[None]:
        """Keep the attempt's lease extended while the step runs (see :class:`Heartbeats`)."""
        with self._heartbeats.beating(delivery):
            yield

    def on_process_init(self, **_: Any) -> None:
        """Celery signal: a prefork child started; nothing of the parent's threads is its."""
        self._local = threading.local()
        self._heartbeats = Heartbeats(self.runtime)
        # The parent's sweeper thread may have held the runtime's lock at fork time.
        self.runtime.after_fork()

    def on_process_shutdown(self, **_: Any) -> None:
        """Celery signal: a prefork child is exiting."""
        self.stop()

    def stop(self) -> None:
        """Stop this process's heartbeat thread (a worker shutting down, a test ending)."""
        self._heartbeats.stop()
