"""What runs inside a Celery worker process: the task body, the sweeper, deadlines."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..runtime.engine import Dispatch
from ..store.base import DeliveryRecord, utcnow

if TYPE_CHECKING:
    from .runtime import CeleryRuntime

log = logging.getLogger("celery_workflows.worker")

MAX_ID_LENGTH = 300


class Worker:
    """The worker-side half of a :class:`~celery_workflows.celery.CeleryRuntime`."""

    def __init__(self, runtime: CeleryRuntime) -> None:
        self.runtime = runtime
        # One loop per thread that runs tasks (the prefork and solo pools: one thread per
        # process; the threads pool: several).
        self._local = threading.local()
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._heartbeats = Heartbeats(runtime)

    # --- the event loop of this process ---------------------------------------------

    def loop(self) -> asyncio.AbstractEventLoop:
        """This thread's event loop, kept across tasks (cached resources stay valid)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
        return loop

    # --- task bodies -------------------------------------------------------------------

    def step_task(
        self, delivery_id: Any, max_running: int | None = None, workflow_name: str | None = None
    ) -> None:
        """Body of every step task: execute one delivery by id."""
        if not isinstance(delivery_id, str) or not 0 < len(delivery_id) <= MAX_ID_LENGTH:
            # Nothing else comes from the broker: a malformed id is logged and dropped.
            log.error("rejected a step message with a malformed delivery id: %r", delivery_id)
            return
        self.start_sweeper()
        execute = self.runtime.engine.execute(
            delivery_id, max_running=max_running, workflow_name=workflow_name
        )
        self.loop().run_until_complete(execute)

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

    # --- the heartbeat -----------------------------------------------------------------

    @contextmanager
    def heartbeat(self, delivery: DeliveryRecord) -> Iterator[None]:
        """Keep the attempt's lease extended while the step runs (see :class:`Heartbeats`)."""
        with self._heartbeats.beating(delivery):
            yield

    # --- the sweeper -------------------------------------------------------------------

    def on_process_init(self, **_: Any) -> None:
        """Celery signal: a worker process started; start its sweeper."""
        self._local = threading.local()
        self._sweeper = None
        self._heartbeats = Heartbeats(self.runtime)
        self.start_sweeper()

    def stop(self) -> None:
        """Stop this process's sweeper (a worker shutting down, a test ending)."""
        self._stop.set()
        self._heartbeats.stop()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)

    def start_sweeper(self) -> None:
        """Start this process's sweeper thread once."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        self._stop.clear()  # sweeping again after stop(): a test reusing a runtime
        self._sweeper = threading.Thread(target=self._sweep_forever, name="cw-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_forever(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.wait(self.runtime.sweep_interval):
                try:
                    loop.run_until_complete(self.sweep())
                except Exception:
                    log.exception("sweep failed; trying again in %ss", self.runtime.sweep_interval)
        finally:
            loop.close()

    async def sweep(self) -> int:
        """Publish again what is due: expired leases, never-published or lost messages;
        and fail runs past their timeout."""
        await self._expire_runs()
        store = self.runtime.store
        stale = self.runtime.stale_after
        due = await store.due_deliveries(limit=200, stale_after=stale)
        cutoff = utcnow() - timedelta(seconds=stale)
        items = []
        for delivery in due:
            # A pending delivery is published right after its commit; only one untouched
            # for ``stale_after`` seconds was never published (a crash) or lost its message.
            touched = max(delivery.updated_at, delivery.not_before or delivery.updated_at)
            if delivery.status == "pending" and touched > cutoff:
                continue
            name = (await store.get_run(delivery.run_id)).workflow_name
            items.append(Dispatch(delivery.delivery_id, delivery.run_id, name, delivery.step))
        if items:
            log.info("sweeper publishes %d due deliveries again", len(items))
            self.runtime.dispatcher.dispatch(items)
            await store.mark_published([i.delivery_id for i in items])
        return len(items)


class Heartbeats:
    """One thread per worker process that extends the leases of the attempts running in it.

    A thread, not a task of the step's loop: a step that blocks its loop (CPU work, a sync
    call) must not lose its lease and get run a second time elsewhere. One thread for all
    of them, started once: a thread started and joined per step would cost every hop.
    A new attempt's first beat comes within ``heartbeat_seconds``, well inside its lease.
    """

    def __init__(self, runtime: CeleryRuntime) -> None:
        self.runtime = runtime
        self._active: dict[str, DeliveryRecord] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def beating(self, delivery: DeliveryRecord) -> Iterator[None]:
        """Beat for ``delivery`` until the block ends."""
        with self._lock:
            self._active[delivery.delivery_id] = delivery
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()  # beating again after stop(): a test reusing a runtime
                self._thread = threading.Thread(
                    target=self._beat_forever, name="cw-heartbeat", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                if self._active.get(delivery.delivery_id) is delivery:
                    del self._active[delivery.delivery_id]

    def stop(self) -> None:
        """Stop the thread (a worker shutting down, a test ending)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat_forever(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.wait(self.runtime.heartbeat_seconds):
                with self._lock:
                    running = list(self._active.values())
                for delivery in running:
                    loop.run_until_complete(self._beat(delivery))
        finally:
            loop.close()

    async def _beat(self, delivery: DeliveryRecord) -> None:
        runtime = self.runtime
        try:
            kept = await runtime.store.extend_lease(
                delivery.fence, lease_seconds=runtime.lease_seconds
            )
        except Exception:
            log.exception("heartbeat of delivery %s failed", delivery.delivery_id)
            return
        if not kept:
            # Superseded: the new attempt owns the lease now; stop beating for this one.
            with self._lock:
                if self._active.get(delivery.delivery_id) is delivery:
                    del self._active[delivery.delivery_id]
