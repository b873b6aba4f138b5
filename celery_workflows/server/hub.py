"""One stream reader per server process and run store, fanned out to every open stream.

A client that follows a run does not read the database: it subscribes here, and a single
background task reads the new entries of every followed run in one store call
(:meth:`RunStore.read_streams`) and hands each subscriber its share. When to read is the
:class:`ChangeFeed`'s call: :class:`PollingFeed` reads every ``interval``;
:class:`~.feeds.NotifyFeed` when a followed run commits (PostgreSQL LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from typing import Protocol

from ..errors import RunNotFoundError
from ..store.base import RunStore, StreamEntry

__all__ = ["ChangeFeed", "PollingFeed", "StreamHub", "Subscription"]

log = logging.getLogger("celery_workflows.server")

#: Batches a subscriber may hold unread; past it, the hub skips it until it catches up
#: (its cursor stays put, so nothing is lost: the next read starts from there).
QUEUE_BATCHES = 8


class ChangeFeed(Protocol):
    """Tells the hub when followed runs may have new stream entries."""

    async def wait(self, run_ids: Collection[str]) -> None:
        """Return when any of ``run_ids`` may have changed (or after a while anyway)."""
        ...

    # Optional: ``stop()``, called when the hub's reader ends (nobody follows a run), so
    # a feed that subscribed to runs stops listening (see ``StreamHub._run``).


class PollingFeed:
    """Says "maybe" every ``interval`` seconds: one read per interval for all streams."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval

    async def wait(self, run_ids: Collection[str]) -> None:
        """Sleep one interval."""
        await asyncio.sleep(self.interval)


class Subscription:
    """One open stream: entries after ``cursor`` arrive in batches; None ends it."""

    def __init__(self, run_id: str, cursor: int) -> None:
        self.run_id = run_id
        self.cursor = cursor
        # Unbounded, so the final None always fits; the hub bounds it by backed_up.
        self.queue: asyncio.Queue[list[StreamEntry] | None] = asyncio.Queue()
        self.idle_since = time.monotonic()

    @property
    def backed_up(self) -> bool:
        """True while the client is QUEUE_BATCHES behind (the hub skips it meanwhile)."""
        return self.queue.qsize() >= QUEUE_BATCHES

    async def next_batch(self) -> list[StreamEntry] | None:
        """The next entries, or None once the run ended (or the hub stopped)."""
        return await self.queue.get()


class StreamHub:
    """Follows runs of one store for every subscriber of this process.

    ``finished_check`` bounds how long a stream of a run that ended without a final stream
    entry stays open: a run idle that long is looked up (once per interval, not per
    subscriber) and its subscribers are ended if it finished.
    """

    def __init__(
        self, store: RunStore, feed: ChangeFeed | None = None, *, finished_check: float = 2.0
    ) -> None:
        self.store = store
        self.feed: ChangeFeed = feed or PollingFeed()
        self.finished_check = finished_check
        self._subs: set[Subscription] = set()
        self._nudge = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriptions(self) -> int:
        """Open streams right now."""
        return len(self._subs)

    @property
    def running(self) -> bool:
        """True while the reader task is alive (it ends when nobody subscribes)."""
        return self._task is not None and not self._task.done()

    def subscribe(self, run_id: str, after_seq: int) -> Subscription:
        """Follow ``run_id`` from the entry after ``after_seq`` (store numbering)."""
        sub = Subscription(run_id, after_seq)
        self._subs.add(sub)
        self._nudge.set()  # read now: the subscriber's backlog, without waiting a tick
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop feeding ``sub`` (its client left or its stream ended)."""
        self._subs.discard(sub)
        if not self._subs:
            self._nudge.set()  # the reader sees nobody is left and ends

    async def close(self) -> None:
        """End every stream and the reader task."""
        for sub in list(self._subs):
            self._end(sub)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            while self._subs:
                self._nudge.clear()
                try:
                    await self._read_once()
                except Exception:  # a store outage: keep the streams, try again next tick
                    log.exception("reading the streams of %d runs failed", len(self._subs))
                if not self._subs:
                    break
                await self._wait()
        finally:
            stop = getattr(self.feed, "stop", None)
            if callable(stop):
                stop()

    async def _wait(self) -> None:
        runs = {sub.run_id for sub in self._subs}
        waits = [
            asyncio.ensure_future(self.feed.wait(runs)),
            asyncio.ensure_future(self._nudge.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _read_once(self) -> None:
        cursors: dict[str, int] = {}
        for sub in self._subs:
            if not sub.backed_up:
                cursors[sub.run_id] = min(cursors.get(sub.run_id, sub.cursor), sub.cursor)
        found = await self.store.read_streams(cursors) if cursors else {}
        now = time.monotonic()
        for sub in list(self._subs):
            entries = [e for e in found.get(sub.run_id, ()) if e.seq > sub.cursor]
            if entries and not sub.backed_up:
                sub.queue.put_nowait(entries)
                sub.cursor = entries[-1].seq
                sub.idle_since = now
        await self._end_finished(now)

    async def _end_finished(self, now: float) -> None:
        idle = {s.run_id for s in self._subs if now - s.idle_since >= self.finished_check}
        for run_id in idle:
            try:
                finished = (await self.store.get_run(run_id)).finished
            except RunNotFoundError:
                finished = True  # deleted (purged): nothing more will come
            subs = [s for s in self._subs if s.run_id == run_id]
            for sub in subs:
                sub.idle_since = now
                if not finished:
                    continue
                # Entries committed with the run's end (between the read above and the
                # lookup) still go out first.
                with contextlib.suppress(RunNotFoundError):
                    rest = await self.store.read_stream(run_id, sub.cursor)
                    if rest:
                        sub.queue.put_nowait(rest)
                        sub.cursor = rest[-1].seq
                self._end(sub)

    def _end(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.queue.put_nowait(None)
