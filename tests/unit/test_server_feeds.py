"""The stream hub's change feeds: which one a store gets, and NotifyFeed's wake-ups."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from celery_workflows.server.feeds import NotifyFeed, default_feed
from celery_workflows.server.hub import PollingFeed, StreamHub
from celery_workflows.store.base import NewRun
from celery_workflows.store.memory import InMemoryRunStore
from celery_workflows.store.sql import SqlRunStore, upgrade


async def test_a_store_that_pushes_commits_gets_a_notify_feed_and_sqlite_polls(
    tmp_path: Path,
) -> None:
    assert isinstance(default_feed(InMemoryRunStore()), NotifyFeed)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    store = SqlRunStore(url)
    try:
        assert isinstance(default_feed(store), PollingFeed)
    finally:
        await store.close()


async def test_notify_feed_wakes_the_hub_at_a_commit_and_lets_go_when_nobody_follows() -> None:
    store = InMemoryRunStore()
    await store.create_run(NewRun("run-1", "wf", {}, {}), [])
    feed = NotifyFeed(store.watch(), safety=30.0)
    hub = StreamHub(store, feed, finished_check=60.0)
    sub = hub.subscribe("run-1", 0)
    await asyncio.sleep(0.05)  # the reader read the (empty) backlog and waits on the feed
    assert feed.following == 1
    async with store.locked("run-1") as txn:
        await txn.append_stream({"n": 1})
    started = time.monotonic()
    batch = await asyncio.wait_for(sub.next_batch(), 5)
    assert batch is not None and [e.event for e in batch] == [{"n": 1}]
    assert time.monotonic() - started < 1.0  # not the 30 s safety tick
    hub.unsubscribe(sub)
    for _ in range(100):
        if not hub.running:
            break
        await asyncio.sleep(0.01)
    assert feed.following == 0 and store.watch().watching() == 0
    await hub.close()
