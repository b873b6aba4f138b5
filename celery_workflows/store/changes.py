"""Wake-ups of callers waiting on runs (the wake-up seam, DESIGN §4).

A caller waiting for a run's result or stream subscribes to the run's changes with
:meth:`ChangeNotifier.subscribe` and sleeps on the :class:`RunWatch` it gets; the store
wakes every watch of a run after a commit that appended to its stream or changed its
status. How far that reaches is the notifier's :attr:`~ChangeNotifier.pushes`:

- ``True``: commits of every process wake the watches (PostgreSQL LISTEN/NOTIFY, or the
  in-memory store, which is the whole database of its process): a waiter only needs a
  slow safety poll, for a notification lost while the listener reconnected;
- ``False``: only this process's own commits and :meth:`~ChangeNotifier.wake` calls do
  (SQLite): a waiter must also poll the store.

:class:`LocalNotifier` is the fan-out every notifier is built on: one registry per
process and store, thread-safe, each watch woken on its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Protocol

__all__ = ["ChangeNotifier", "LocalNotifier", "RunWatch"]


class RunWatch:
    """One waiter's subscription to a run: set after every change of the run.

    Bound to the event loop it was made on; wake-ups from other threads are handed to
    that loop. Use it as a context manager (or call :meth:`close`) so a waiter that gives
    up (timeout, cancellation, a client gone) stops listening at once.

    The pattern that misses nothing: ``clear()``, read the store, then ``wait()``; a
    change committed after the clear sets the watch, even if the read already saw it.
    """

    def __init__(
        self,
        notifier: ChangeNotifier,
        run_id: str,
        event: asyncio.Event | None = None,
    ) -> None:
        self.notifier = notifier
        self.run_id = run_id
        self.loop = asyncio.get_running_loop()
        #: Several watches may share one event (a feed that follows many runs).
        self.event = event if event is not None else asyncio.Event()

    @property
    def changed(self) -> bool:
        """True when a change arrived since the last :meth:`clear`."""
        return self.event.is_set()

    def clear(self) -> None:
        """Forget past changes (call before reading the store)."""
        self.event.clear()

    async def wait(self, timeout: float | None) -> bool:
        """Sleep until a change or ``timeout`` seconds (None: no limit); True if woken."""
        if timeout is None:
            await self.event.wait()
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        return self.event.is_set()

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self.notifier.unsubscribe(self)

    def __enter__(self) -> RunWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _set(self) -> None:
        """Wake the watch from any thread."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is running:
            self.event.set()
        elif not self.loop.is_closed():
            # A loop closed meanwhile has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.event.set)


class ChangeNotifier(Protocol):
    """Where waiters on runs subscribe; see the module docstring."""

    @property
    def pushes(self) -> bool:
        """True when commits of every process wake the watches (waiters poll slowly)."""
        ...

    def subscribe(self, run_id: str, *, event: asyncio.Event | None = None) -> RunWatch:
        """Watch ``run_id`` from the running loop (``event``: share one across runs)."""
        ...

    def unsubscribe(self, watch: RunWatch) -> None:
        """Stop waking ``watch`` (idempotent)."""
        ...

    def wake(self, run_id: str) -> None:
        """Wake this process's watches of ``run_id`` (from any thread)."""
        ...

    def watching(self) -> int:
        """Subscriptions open in this process (a waiter that gave up holds none)."""
        ...


class LocalNotifier:
    """The fan-out of one process: watches by run id, woken by :meth:`wake`.

    Alone it is the notifier of a store whose other processes' commits it cannot see
    (``pushes=False``: waiters poll too); the in-memory store passes ``pushes=True``, and
    the PostgreSQL listener calls :meth:`wake` for each notification it receives.
    """

    def __init__(self, *, pushes: bool = False) -> None:
        self._pushes = pushes
        self._lock = threading.Lock()
        self._watches: dict[str, set[RunWatch]] = {}

    @property
    def pushes(self) -> bool:
        """See :attr:`ChangeNotifier.pushes`."""
        return self._pushes

    def subscribe(self, run_id: str, *, event: asyncio.Event | None = None) -> RunWatch:
        """Watch ``run_id`` from the running loop."""
        watch = RunWatch(self, run_id, event)
        with self._lock:
            self._watches.setdefault(run_id, set()).add(watch)
        self._subscribed()
        return watch

    def unsubscribe(self, watch: RunWatch) -> None:
        """Stop waking ``watch``."""
        with self._lock:
            found = self._watches.get(watch.run_id)
            if found is not None:
                found.discard(watch)
                if not found:
                    del self._watches[watch.run_id]

    def wake(self, run_id: str) -> None:
        """Set every watch of ``run_id``."""
        with self._lock:
            found = list(self._watches.get(run_id, ()))
        for watch in found:
            watch._set()

    def wake_all(self) -> None:
        """Set every watch (after notifications may have been lost: each waiter reads)."""
        with self._lock:
            found = [w for watches in self._watches.values() for w in watches]
        for watch in found:
            watch._set()

    def watching(self) -> int:
        """Subscriptions open in this process."""
        with self._lock:
            return sum(len(watches) for watches in self._watches.values())

    def _subscribed(self) -> None:
        """Hook: a watch was added (the PostgreSQL listener starts on the first)."""
