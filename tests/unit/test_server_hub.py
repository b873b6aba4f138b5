"""The stream hub: one reader per store for every open stream of a process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from celery_workflows.server.hub import QUEUE_BATCHES, PollingFeed, StreamHub, Subscription
from celery_workflows.store.base import NewRun, StreamEntry
from celery_workflows.store.memory import InMemoryRunStore

WAIT = 10.0


class CountingStore(InMemoryRunStore):
    """The in-memory store, counting the reads the hub makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.single_reads = 0

    async def read_streams(
        self, cursors: Mapping[str, int], limit: int = 1000
    ) -> dict[str, list[StreamEntry]]:
        self.reads += 1
        return await super().read_streams(cursors, limit)

    async def read_stream(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StreamEntry]:
        self.single_reads += 1
        return await super().read_stream(run_id, after_seq, limit)


async def append(store: InMemoryRunStore, run_id: str, *values: int) -> None:
    async with store.locked(run_id) as txn:
        for value in values:
            await txn.append_stream({"n": value})


async def drain(sub: Subscription, count: int) -> list[int]:
    seqs: list[int] = []

    async def read() -> None:
        while len(seqs) < count:
            batch = await sub.next_batch()
            assert batch is not None
            seqs.extend(entry.seq for entry in batch)

    await asyncio.wait_for(read(), WAIT)
    return seqs


async def test_one_read_per_tick_serves_every_subscriber_from_its_own_cursor() -> None:
    store = CountingStore()
    for run_id in ("a", "b"):
        await store.create_run(NewRun(run_id, "wf", {}, {}), [])
    await append(store, "a", 1, 2, 3)
    await append(store, "b", 1)
    hub = StreamHub(store, PollingFeed(0.01))
    subs = [hub.subscribe("a", 0), hub.subscribe("a", 2), hub.subscribe("b", 0)]
    assert await drain(subs[0], 3) == [1, 2, 3]
    assert await drain(subs[1], 1) == [3]
    assert await drain(subs[2], 1) == [1]
    await append(store, "a", 4)
    assert await drain(subs[0], 1) == [4] and await drain(subs[1], 1) == [4]
    ticks = store.reads
    await asyncio.sleep(0.2)
    # About one read per tick for all three streams, never one per stream.
    assert store.reads - ticks <= 0.2 / 0.01 + 2
    assert store.single_reads == 0 and hub.running
    for sub in subs:
        hub.unsubscribe(sub)
    await asyncio.wait_for(_until(lambda: not hub.running), WAIT)


async def test_a_subscriber_that_falls_behind_loses_nothing() -> None:
    store = InMemoryRunStore()
    await store.create_run(NewRun("a", "wf", {}, {}), [])
    hub = StreamHub(store, PollingFeed(0.005))
    sub = hub.subscribe("a", 0)
    for n in range(QUEUE_BATCHES * 3):  # more batches than it may hold unread
        await append(store, "a", n)
        await asyncio.sleep(0.02)
    assert sub.queue.qsize() <= QUEUE_BATCHES
    assert await drain(sub, QUEUE_BATCHES * 3) == list(range(1, QUEUE_BATCHES * 3 + 1))
    await hub.close()


async def test_a_run_that_ended_without_a_final_entry_ends_its_streams() -> None:
    store = InMemoryRunStore()
    await store.create_run(NewRun("a", "wf", {}, {}), [])
    hub = StreamHub(store, PollingFeed(0.01), finished_check=0.05)
    sub = hub.subscribe("a", 0)
    async with store.locked("a") as txn:
        await txn.append_stream({"last": True})
        txn.set_status("failed", error={"message": "gone"})
    assert await drain(sub, 1) == [1]
    assert await asyncio.wait_for(sub.next_batch(), WAIT) is None
    await asyncio.wait_for(_until(lambda: not hub.running), WAIT)


async def _until(check: object) -> None:
    assert callable(check)
    while not check():
        await asyncio.sleep(0.01)
