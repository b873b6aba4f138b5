"""Leases of running attempts, kept alive from one thread per worker process."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..store.base import DeliveryRecord

if TYPE_CHECKING:
    from .runtime import CeleryRuntime

log = logging.getLogger("celery_workflows.worker")


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
