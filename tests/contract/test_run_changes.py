"""The wake-up seam (``RunStore.watch()``): every store must pass every test of this module.

A commit that appends to a run's stream or changes its status wakes the run's watches
(from a second store on the same database where the notifier pushes: another process's
commit, as far as one process can tell); a watch that closed is woken by nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from celery_workflows.store.base import NewDelivery, NewRun, RunStore
from celery_workflows.store.changes import RunWatch

WAIT = 10.0  # bound on every wait that should end early


async def start(store: RunStore, run_id: str = "run-1", deliveries: tuple[str, ...] = ()) -> None:
    run = NewRun(run_id, "wf", {"count": 0}, {})
    news = [NewDelivery(d, "step_a", {"type": "Ev"}) for d in deliveries]
    assert (await store.create_run(run, news))[1]


async def settled(watch: RunWatch) -> RunWatch:
    """``watch`` once quiet: a listener that just connected wakes every watch (it may have
    missed commits), which must not pass for the wake-up under test."""
    while await watch.wait(0.3):
        watch.clear()
    return watch


def _writer(store: RunStore, make_store: Callable[[], RunStore]) -> RunStore:
    """Where commits come from: another store on the same database if the notifier
    pushes every process's commits, else the watched store itself."""
    return make_store() if store.watch().pushes else store


async def test_a_stream_append_wakes_the_runs_watch(
    store: RunStore, make_store: Callable[[], RunStore]
) -> None:
    await start(store)
    writer = _writer(store, make_store)
    with store.watch().subscribe("run-1") as watch:
        await settled(watch)
        async with writer.locked("run-1") as txn:
            await txn.append_stream({"type": "Progress"})
        assert await watch.wait(WAIT)


async def test_a_status_change_wakes_the_runs_watch(
    store: RunStore, make_store: Callable[[], RunStore]
) -> None:
    await start(store)
    writer = _writer(store, make_store)
    with store.watch().subscribe("run-1") as watch:
        await settled(watch)
        async with writer.locked("run-1") as txn:
            txn.set_status("completed", result={"done": True})
        assert await watch.wait(WAIT)


async def test_a_rolled_back_transaction_wakes_nobody(store: RunStore) -> None:
    await start(store)
    with store.watch().subscribe("run-1") as watch:
        await settled(watch)
        try:
            async with store.locked("run-1") as txn:
                await txn.append_stream({"type": "Progress"})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert not await watch.wait(0.2)


async def test_a_commit_wakes_only_the_watches_of_its_run(
    store: RunStore, make_store: Callable[[], RunStore]
) -> None:
    await start(store, "run-1", ("d1",))
    await start(store, "run-2", ("d2",))
    writer = _writer(store, make_store)
    with (
        store.watch().subscribe("run-1") as one,
        store.watch().subscribe("run-1") as also_one,
        store.watch().subscribe("run-2") as two,
    ):
        for watch in (one, also_one, two):
            await settled(watch)
        async with writer.locked("run-1") as txn:
            txn.set_status("waiting")
        assert await one.wait(WAIT)
        assert await also_one.wait(WAIT)
        assert not two.changed


async def test_a_closed_watch_is_no_longer_subscribed(store: RunStore) -> None:
    notifier = store.watch()
    before = notifier.watching()
    watch = notifier.subscribe("run-1")
    assert notifier.watching() == before + 1
    watch.close()
    watch.close()  # idempotent
    assert notifier.watching() == before
    notifier.wake("run-1")
    assert not watch.changed


async def test_wake_reaches_a_watch_on_another_threads_loop(store: RunStore) -> None:
    notifier = store.watch()
    woken = threading.Event()

    async def wait_there() -> None:
        with notifier.subscribe("run-1") as watch:
            subscribed.set()
            if await watch.wait(WAIT):
                woken.set()

    subscribed = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(wait_there()))
    thread.start()
    assert await asyncio.to_thread(subscribed.wait, WAIT)
    notifier.wake("run-1")
    await asyncio.to_thread(thread.join, WAIT)
    assert woken.is_set()
