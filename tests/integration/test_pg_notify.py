"""Results and streams arrive when they commit (issue 13), on a real PostgreSQL.

The waiting side is a ``CeleryRuntime`` whose broker nobody consumes (``memory://``): the
run stays open until a second store on the same database (as another process would)
commits its end. Its safety poll is 5 s, so a waiter woken within a fraction of that was
woken by the notification.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery

from celery_workflows import CeleryRuntime, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent
from celery_workflows.server.feeds import NotifyFeed
from celery_workflows.server.hub import StreamHub
from celery_workflows.store.sql import SqlRunStore
from celery_workflows.store.sql._listen import APPLICATION_NAME, PgNotifier

pytestmark = pytest.mark.integration

SAFETY = 5.0
#: A woken waiter reads the run once; on a loaded 2-CPU machine that may take a while,
#: still far below the safety poll (which is what a missed notification would cost).
PROMPT = 1.5


class Progress(Event):
    n: int


class Never(Workflow):
    """One step that no worker will run (nothing consumes the broker)."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="unreachable")


@pytest.fixture
async def setup(
    create_postgres_database: Callable[[], str],
) -> AsyncIterator[tuple[CeleryRuntime, Never, SqlRunStore, str]]:
    url = create_postgres_database()
    runtime = CeleryRuntime(Celery("notify-test", broker="memory://"), database_url=url)
    runtime.safety_poll = SAFETY
    workflow = Never(runtime=runtime, timeout=None)
    other = SqlRunStore(url)  # another process's store, as far as this one can tell
    yield runtime, workflow, other, url
    await other.close()
    await runtime.store.close()


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _listeners(url: str) -> int:
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _notifier(runtime: CeleryRuntime) -> PgNotifier:
    notifier = runtime.store.watch()
    assert isinstance(notifier, PgNotifier)
    return notifier


async def _listening(notifier: PgNotifier) -> None:
    for _ in range(200):
        if notifier.connected.is_set():
            await asyncio.sleep(0.1)  # its wake-up of every watch has passed
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the listener did not connect")


async def _finish(
    runtime: CeleryRuntime, workflow: Never, other: SqlRunStore, run_id: str
) -> float:
    """Complete ``run_id`` from the other store; the time its commit returned."""
    codec = runtime.binding(workflow).codec
    async with other.locked(run_id) as txn:
        txn.set_status("completed", result=codec.encode_event(StopEvent(result=7)))
    return time.perf_counter()


async def test_a_notification_wakes_a_waiting_result_at_the_commit(setup: Any) -> None:
    runtime, workflow, other, _ = setup
    handler = workflow.run()
    woke: list[float] = []

    async def wait() -> Any:
        result = await handler
        woke.append(time.perf_counter())
        return result

    waiter = asyncio.create_task(wait())
    await _listening(_notifier(runtime))
    committed = await _finish(runtime, workflow, other, handler.run_id)
    assert await asyncio.wait_for(waiter, SAFETY) == 7
    assert woke[0] - committed < PROMPT, f"woken {woke[0] - committed:.3f}s after the commit"


async def test_a_notification_wakes_a_stream_at_the_commit(setup: Any) -> None:
    runtime, workflow, other, _ = setup
    handler = workflow.run()
    codec = runtime.binding(workflow).codec
    got: list[tuple[Event, float]] = []

    async def follow() -> None:
        async for event in handler.stream_events():
            got.append((event, time.perf_counter()))

    follower = asyncio.create_task(follow())
    await _listening(_notifier(runtime))
    async with other.locked(handler.run_id) as txn:
        await txn.append_stream(codec.encode_event(Progress(n=1)))
    committed = time.perf_counter()
    for _ in range(int(SAFETY / 0.01)):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got and isinstance(got[0][0], Progress)
    assert got[0][1] - committed < PROMPT, f"streamed {got[0][1] - committed:.3f}s late"
    await _finish(runtime, workflow, other, handler.run_id)
    await asyncio.wait_for(follower, SAFETY)


async def test_many_waiters_share_one_listener_connection(setup: Any) -> None:
    runtime, workflow, other, url = setup
    handlers = [workflow.run() for _ in range(20)]
    waiters = [asyncio.ensure_future(h.stop_event_result()) for h in handlers]
    # A second store on the database, in the same process, shares the listener too.
    second = SqlRunStore(url)
    try:
        with second.watch().subscribe(handlers[0].run_id):
            await _listening(_notifier(runtime))
            assert runtime.store.watch().watching() == 21  # one notifier, 21 watches
            assert second.watch() is runtime.store.watch()
            assert _listeners(url) == 1
    finally:
        await second.close()
    for handler in handlers:
        await _finish(runtime, workflow, other, handler.run_id)
    results = await asyncio.wait_for(asyncio.gather(*waiters), SAFETY)
    assert [r.result for r in results] == [7] * 20
    assert runtime.store.watch().watching() == 0
    assert _listeners(url) == 1


async def test_a_waiter_that_gives_up_stops_listening_at_once(setup: Any) -> None:
    runtime, workflow, _, _ = setup
    handler = workflow.run()
    notifier = runtime.store.watch()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.stop_event_result(), 0.2)
    assert notifier.watching() == 0

    stream = handler.stream_events()
    follower = asyncio.ensure_future(stream.__anext__())
    for _ in range(100):
        if notifier.watching():
            break
        await asyncio.sleep(0.01)
    assert notifier.watching() == 1
    follower.cancel()  # a client gone mid-stream
    with pytest.raises(asyncio.CancelledError):
        await follower
    await stream.aclose()
    assert notifier.watching() == 0


async def test_the_listener_survives_a_killed_connection(setup: Any) -> None:
    runtime, workflow, other, url = setup
    handler = workflow.run()
    notifier = _notifier(runtime)
    waiter = asyncio.ensure_future(handler.stop_event_result())
    await _listening(notifier)
    killed = notifier.backend_pid
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (killed,))
    for _ in range(200):  # reconnected with a new backend
        if notifier.connected.is_set() and notifier.backend_pid not in (None, killed):
            break
        await asyncio.sleep(0.05)
    assert notifier.backend_pid not in (None, killed)
    await _listening(notifier)
    committed = await _finish(runtime, workflow, other, handler.run_id)
    stop = await asyncio.wait_for(waiter, SAFETY)
    assert stop.result == 7
    assert time.perf_counter() - committed < PROMPT
    assert notifier.connections >= 2
    assert _listeners(url) == 1


async def test_the_stream_hub_reads_when_a_followed_run_commits(setup: Any) -> None:
    runtime, workflow, other, _ = setup
    handler = workflow.run()
    codec = runtime.binding(workflow).codec
    notifier = _notifier(runtime)
    feed = NotifyFeed(notifier, safety=SAFETY)
    hub = StreamHub(runtime.store, feed, finished_check=SAFETY * 2)
    sub = hub.subscribe(handler.run_id, 0)
    await _listening(notifier)
    async with other.locked(handler.run_id) as txn:
        await txn.append_stream(codec.encode_event(Progress(n=1)))
    committed = time.perf_counter()
    batch = await asyncio.wait_for(sub.next_batch(), SAFETY)
    assert batch is not None and len(batch) == 1
    assert time.perf_counter() - committed < PROMPT
    hub.unsubscribe(sub)
    for _ in range(100):
        if not hub.running:
            break
        await asyncio.sleep(0.01)
    assert feed.following == 0 and notifier.watching() == 0
    await hub.close()


async def test_the_cli_tail_is_woken_by_the_commit(setup: Any) -> None:
    """``celery-workflows runs events --follow`` waits on the notification: with an
    interval of a minute, an entry and the run's end still reach it at once."""
    runtime, workflow, other, url = setup
    handler = workflow.run()
    codec = runtime.binding(workflow).codec
    script = shutil.which("celery-workflows", path=str(Path(sys.executable).parent))
    assert script is not None, "the console script is not installed (scripts/install)"
    tail = await asyncio.create_subprocess_exec(
        *[script, "runs", "events", handler.run_id, "--follow", "--interval", "60"],
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CELERY_WORKFLOWS_DATABASE_URL": url},
    )
    try:
        assert tail.stdout is not None
        # Once the tail listens (nothing else here does), commits wake it; before, its
        # first read would catch the entry, but the run's end below would then wait out
        # the minute.
        for _ in range(400):
            if _listeners(url) >= 1:
                break
            await asyncio.sleep(0.05)
        async with other.locked(handler.run_id) as txn:
            await txn.append_stream(codec.encode_event(Progress(n=1)))
        committed = time.perf_counter()
        line = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert line.decode().split()[:2] == ["1", "Progress"]
        assert time.perf_counter() - committed < 10, "the tail waited for its interval"
        await _finish(runtime, workflow, other, handler.run_id)
        assert await asyncio.wait_for(tail.wait(), 10) == 0
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
