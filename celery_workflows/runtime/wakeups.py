"""Wake-ups of callers waiting on a run, in any thread and event loop."""

from __future__ import annotations

import asyncio
import threading


class Wakeups:
    """Events that waiters on a run sleep on, one per waiter, each bound to its own loop.

    Callers may wait on the same run from several threads, each with its own event loop
    (threaded web servers); a wake-up is delivered to each loop thread-safely.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._runs: dict[int, str] = {}

    def arm(self, run_id: str) -> asyncio.Event:
        """A new event for the calling loop, set at the next change of ``run_id``."""
        event = asyncio.Event()
        with self._lock:
            self._armed.setdefault(run_id, []).append((asyncio.get_running_loop(), event))
            self._runs[id(event)] = run_id
        return event

    def disarm(self, event: asyncio.Event) -> None:
        """Forget ``event`` (its waiter woke up or gave up)."""
        with self._lock:
            run_id = self._runs.pop(id(event), None)
            waiting = self._armed.get(run_id, []) if run_id is not None else []
            waiting[:] = [(loop, e) for loop, e in waiting if e is not event]
            if run_id is not None and not waiting:
                self._armed.pop(run_id, None)

    def wake(self, run_id: str) -> None:
        """Set every event armed for ``run_id``."""
        with self._lock:
            waiting = self._armed.pop(run_id, [])
            for event_id in [id(e) for _, e in waiting]:
                self._runs.pop(event_id, None)
        for loop, event in waiting:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)


__all__ = ["Wakeups"]
