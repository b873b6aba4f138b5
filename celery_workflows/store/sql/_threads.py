"""Threads that run blocking database calls for the event loop, one per transaction.

A transaction that waits for a row lock blocks the thread it runs on. If transactions
shared a bounded pool, the waiters could fill it while the holder of the lock (whose body
is awaiting on the loop) needs a thread to commit: the process would deadlock. So each
transaction checks out its own single-thread executor for its whole life; idle ones are
kept for reuse. The loop thread itself never waits for the database's locks.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["LocalRunLocks", "TxnThread", "TxnThreadPool"]

T = TypeVar("T")


class TxnThread:
    """One OS thread that runs the calls of one transaction, in submission order."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cw-sql-txn")

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread and await its result without blocking the loop."""
        return await asyncio.wrap_future(self._executor.submit(fn))

    def run_blocking(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread and wait here (only for calls that take no lock)."""
        return self._executor.submit(fn).result()

    def submit(self, fn: Callable[[], object]) -> Future[object]:
        """Queue ``fn`` behind the calls already submitted; do not wait."""
        return self._executor.submit(fn)

    def shutdown(self, *, wait: bool) -> None:
        """Stop the thread once its queued calls are done."""
        self._executor.shutdown(wait=wait)


class TxnThreadPool:
    """Hands out a :class:`TxnThread` per transaction and keeps a few idle ones."""

    def __init__(self, max_idle: int = 8) -> None:
        self._max_idle = max_idle
        self._idle: deque[TxnThread] = deque()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> TxnThread:
        """An idle thread, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return TxnThread()

    def release(self, thread: TxnThread) -> None:
        """Give a thread back; calls still queued on it run before any new user's."""
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(thread)
                return
        thread.shutdown(wait=False)

    def close(self) -> None:
        """Stop the idle threads (waiting for their queued calls)."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for thread in idle:
            thread.shutdown(wait=True)


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class LocalRunLocks:
    """A per-process queue in front of each run's database lock: an optimisation only.

    Coroutines of one process that want the same run wait here, so that only one of them
    holds a connection and a thread while waiting for the row lock. Correctness comes from
    the database lock that is taken afterwards. Locks are per event loop (asyncio locks
    cannot be shared between loops) and dropped when nobody holds or waits for them.
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Slot]]
        self._by_loop = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    @asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        """Wait for the other coroutines of this loop that hold ``run_id``."""
        loop = asyncio.get_running_loop()
        with self._guard:
            slots = self._by_loop.setdefault(loop, {})
        slot = slots.get(run_id)
        if slot is None:
            slot = slots[run_id] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del slots[run_id]
