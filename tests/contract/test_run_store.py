"""The run store contract: every implementation must pass every test of this module.

Payloads are JSON-compatible everywhere so the same tests run on every store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from celery_workflows.errors import (
    DeliveryNotFoundError,
    FencedOutError,
    RunNotFoundError,
    StateValidationError,
    StoreError,
    StoreUnavailableError,
)
from celery_workflows.store.base import (
    DeliveryRecord,
    Fence,
    NewDelivery,
    NewRun,
    RunQuery,
    RunRecord,
    RunStore,
)
from celery_workflows.store.sql import SqlRunStore, current

if TYPE_CHECKING:
    from tests.contract.conftest import FakeClock

WAIT = 10.0  # bound on every wait in this module


def new_delivery(delivery_id: str, step: str = "step_a", **kwargs: Any) -> NewDelivery:
    return NewDelivery(delivery_id, step, {"type": "Ev", "id": delivery_id}, **kwargs)


async def start(
    store: RunStore, run_id: str = "run-1", deliveries: tuple[str, ...] = ("d1",), **kwargs: Any
) -> RunRecord:
    run = NewRun(run_id, "wf", {"count": 0}, {"m": 1}, **kwargs)
    record, created = await store.create_run(run, [new_delivery(d) for d in deliveries])
    assert created
    return record


async def claim(store: RunStore, delivery_id: str, lease: float = 30.0) -> DeliveryRecord:
    claimed = await store.claim(delivery_id, lease_seconds=lease)
    assert claimed.outcome == "claimed", claimed
    assert claimed.delivery is not None
    return claimed.delivery


async def statuses(store: RunStore, run_id: str = "run-1") -> dict[str, str]:
    return {d.delivery_id: d.status for d in await store.list_deliveries(run_id)}


# --- runs ------------------------------------------------------------------------------


async def test_create_run_stores_a_running_run_with_its_payloads(store: RunStore) -> None:
    state = {"count": 0, "nested": {"list": [1, 2.5, "x", None, True]}, "text": "žluť"}
    run = NewRun("run-1", "wf", state, {"m": [1]}, code_version="v1", idempotency_key="k")
    record, created = await store.create_run(run, [])
    assert created
    stored = await store.get_run("run-1")
    for got in (record, stored):
        assert (got.run_id, got.workflow_name, got.status) == ("run-1", "wf", "running")
        assert (got.state, got.meta, got.result, got.error) == (state, {"m": [1]}, None, None)
        assert (got.code_version, got.idempotency_key, got.finished) == ("v1", "k", False)
    assert stored.created_at == record.created_at


async def test_records_carry_timezone_aware_utc_timestamps(
    store: RunStore, clock: FakeClock
) -> None:
    deadline = clock.now + timedelta(hours=1)
    await start(store, deadline_at=deadline)
    run = await store.get_run("run-1")
    delivery = await store.get_delivery("d1")
    for value in (run.created_at, run.updated_at, delivery.created_at, delivery.updated_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert run.deadline_at == deadline


async def test_create_run_with_an_existing_run_id_returns_it_and_writes_nothing(
    store: RunStore,
) -> None:
    first = await start(store)
    again = NewRun("run-1", "other", {"count": 99}, {})
    record, created = await store.create_run(again, [new_delivery("d2")])
    assert not created
    assert (record.workflow_name, record.state) == ("wf", first.state)
    assert await statuses(store) == {"d1": "pending"}


async def test_create_run_with_an_existing_idempotency_key_returns_the_first_run(
    store: RunStore,
) -> None:
    await start(store, idempotency_key="order-7")
    record, created = await store.create_run(
        NewRun("run-2", "wf", {}, {}, idempotency_key="order-7"), [new_delivery("d2")]
    )
    assert not created and record.run_id == "run-1"
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-2")


async def test_create_run_inserts_its_first_deliveries_as_pending(store: RunStore) -> None:
    deliveries = [
        new_delivery("d1"),
        new_delivery("d0", step="step_b", parent_id="p", journal_id="j", extra={"x": 1}),
    ]
    await store.create_run(NewRun("run-1", "wf", {}, {}), deliveries)
    d1, d0 = await store.list_deliveries("run-1")  # creation order, not id order
    assert (d1.delivery_id, d1.status, d1.attempt, d1.journal_id) == ("d1", "pending", 0, "d1")
    assert d1.event == {"type": "Ev", "id": "d1"} and d1.extra == {}
    assert (d0.step, d0.parent_id, d0.journal_id, d0.extra) == ("step_b", "p", "j", {"x": 1})
    assert d0.lease_expires_at is None
    # published right after the commit that inserted it
    assert d0.published_at == d0.created_at


async def test_get_run_of_an_unknown_id_raises_run_not_found(store: RunStore) -> None:
    with pytest.raises(RunNotFoundError, match="'nope'"):
        await store.get_run("nope")


async def test_locked_on_an_unknown_run_raises_run_not_found(store: RunStore) -> None:
    with pytest.raises(RunNotFoundError):
        async with store.locked("nope"):
            pytest.fail("the body must not run")


async def test_listing_deliveries_or_stream_of_an_unknown_run_raises_run_not_found(
    store: RunStore,
) -> None:
    with pytest.raises(RunNotFoundError):
        await store.list_deliveries("nope")
    with pytest.raises(RunNotFoundError):
        await store.read_stream("nope")


async def test_get_delivery_of_an_unknown_id_raises_delivery_not_found(store: RunStore) -> None:
    with pytest.raises(DeliveryNotFoundError, match="'nope'"):
        await store.get_delivery("nope")


# --- locked transactions ---------------------------------------------------------------


async def test_locked_commits_state_and_meta_on_clean_exit(store: RunStore) -> None:
    before = await start(store)
    async with store.locked("run-1") as txn:
        assert txn.run.state == {"count": 0}
        txn.set_state({"count": 1})
        txn.set_meta({"waiters": []})
    after = await store.get_run("run-1")
    assert (after.state, after.meta) == ({"count": 1}, {"waiters": []})
    assert after.updated_at > before.updated_at


async def test_locked_transaction_sees_the_row_as_locked_until_commit(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        txn.set_state({"count": 1})
        assert txn.run.state == {"count": 0}
        assert (await store.get_run("run-1")).state == {"count": 0}
    assert (await store.get_run("run-1")).state == {"count": 1}


async def test_locked_rolls_back_every_write_when_the_body_raises(store: RunStore) -> None:
    before = await start(store, deliveries=("d1", "d2"))
    d1 = await claim(store, "d1")
    with pytest.raises(RuntimeError, match="boom"):
        async with store.locked("run-1", d1.fence) as txn:
            txn.set_state({"count": 1})
            txn.set_meta({"changed": True})
            txn.journal_put("d1", 0, "r")
            txn.add_deliveries([new_delivery("d3")])
            txn.finish_delivery(d1.fence, "done")
            await txn.append_stream({"ev": 1})
            txn.set_status("completed", result={"ok": True})
            raise RuntimeError("boom")
    after = await store.get_run("run-1")
    assert (after.state, after.meta, after.status) == (before.state, before.meta, "running")
    assert await statuses(store) == {"d1": "running", "d2": "pending"}
    assert await store.read_stream("run-1") == []
    async with store.locked("run-1") as txn:
        assert await txn.journal_get("d1", 0) is None


async def test_concurrent_locked_blocks_on_one_run_never_lose_an_update(
    store: RunStore,
) -> None:
    await start(store)

    async def increment() -> None:
        async with store.locked("run-1") as txn:
            count = txn.run.state["count"]
            await asyncio.sleep(0)  # let the others run while the lock is held
            txn.set_state({"count": count + 1})

    await asyncio.wait_for(asyncio.gather(*(increment() for _ in range(20))), WAIT)
    assert (await store.get_run("run-1")).state == {"count": 20}


async def test_a_waiting_locked_block_does_not_block_the_event_loop(
    store: RunStore, make_store: Callable[[], RunStore]
) -> None:
    await start(store)
    other = make_store()  # SQL: another engine, so only the database lock makes it wait
    holding, release = asyncio.Event(), asyncio.Event()
    ticks = 0

    async def holder() -> None:
        async with store.locked("run-1") as txn:
            holding.set()
            await release.wait()
            txn.set_state({"count": 1})

    async def waiter() -> int:
        await holding.wait()
        async with other.locked("run-1") as txn:
            return int(txn.run.state["count"])

    async def ticker() -> None:
        nonlocal ticks
        await holding.wait()
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        release.set()

    _, seen, _ = await asyncio.wait_for(asyncio.gather(holder(), waiter(), ticker()), WAIT)
    assert ticks == 20
    assert seen == 1  # the waiter got the lock only after the holder committed


async def test_a_cancelled_waiter_does_not_keep_the_run_locked(
    store: RunStore, make_store: Callable[[], RunStore]
) -> None:
    await start(store)
    other = make_store()
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with store.locked("run-1"):
            holding.set()
            await release.wait()

    async def waiter() -> None:
        async with other.locked("run-1"):
            pytest.fail("the cancelled waiter must not get the lock")

    held = asyncio.create_task(holder())
    await asyncio.wait_for(holding.wait(), WAIT)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    waiting.cancel()
    release.set()
    await asyncio.wait_for(held, WAIT)
    with pytest.raises(asyncio.CancelledError):
        await waiting

    async def edit() -> None:
        async with other.locked("run-1") as txn:
            txn.set_state({"count": 5})

    await asyncio.wait_for(edit(), WAIT)
    assert (await store.get_run("run-1")).state == {"count": 5}


# --- run status ------------------------------------------------------------------------


async def test_set_status_to_terminal_cancels_open_deliveries_and_keeps_closed_ones(
    store: RunStore,
) -> None:
    await start(store, deliveries=("d1", "d2", "d3"))
    d1 = await claim(store, "d1")
    await claim(store, "d2")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "done")
        txn.add_deliveries([new_delivery("d4")])
        txn.set_status("completed", result={"value": 42})
    assert await statuses(store) == {
        "d1": "done",
        "d2": "cancelled",
        "d3": "cancelled",
        "d4": "cancelled",
    }
    assert (await store.get_delivery("d2")).lease_expires_at is None
    run = await store.get_run("run-1")
    assert (run.status, run.result, run.finished) == ("completed", {"value": 42}, True)


async def test_set_status_stores_the_error_of_a_failed_run(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        txn.set_status("failed", error={"type": "ValueError", "message": "bad"})
    run = await store.get_run("run-1")
    assert (run.status, run.error, run.result) == (
        "failed",
        {"type": "ValueError", "message": "bad"},
        None,
    )
    assert await statuses(store) == {"d1": "cancelled"}


async def test_set_status_to_waiting_keeps_deliveries_open(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        txn.set_status("waiting")
    assert (await store.get_run("run-1")).status == "waiting"
    assert await statuses(store) == {"d1": "pending"}


# --- deliveries ------------------------------------------------------------------------


async def test_add_deliveries_with_an_existing_id_is_a_noop(store: RunStore) -> None:
    await start(store)
    await claim(store, "d1")
    async with store.locked("run-1") as txn:
        replayed = NewDelivery("d1", "other_step", {"type": "Other"})
        txn.add_deliveries([replayed, new_delivery("d2"), new_delivery("d2")])
    d1 = await store.get_delivery("d1")
    assert (d1.step, d1.status, d1.attempt) == ("step_a", "running", 1)
    assert [d.delivery_id for d in await store.list_deliveries("run-1")] == ["d1", "d2"]


async def test_list_deliveries_filters_by_status_in_creation_order(store: RunStore) -> None:
    await start(store, deliveries=("c", "a", "b"))
    await claim(store, "a")
    running = await store.list_deliveries("run-1", ["running"])
    open_ = await store.list_deliveries("run-1", ["pending", "running"])
    assert [d.delivery_id for d in running] == ["a"]
    assert [d.delivery_id for d in open_] == ["c", "a", "b"]
    assert await store.list_deliveries("run-1", ["done"]) == []


async def test_open_deliveries_lists_the_committed_pending_and_running_ones(
    store: RunStore,
) -> None:
    await start(store, deliveries=("d1", "d2", "d3"))
    d1 = await claim(store, "d1")
    await claim(store, "d2")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "done")
        txn.add_deliveries([new_delivery("d4")])
        opened = await txn.open_deliveries()
    assert [(d.delivery_id, d.status) for d in opened] == [
        ("d1", "running"),
        ("d2", "running"),
        ("d3", "pending"),
    ]


async def test_claim_of_a_pending_delivery_starts_attempt_one_with_a_lease(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    claimed = await store.claim("d1", lease_seconds=30)
    assert claimed.outcome == "claimed" and claimed.delivery is not None
    delivery = claimed.delivery
    assert (delivery.status, delivery.attempt, delivery.fence) == ("running", 1, Fence("d1", 1))
    assert delivery.lease_expires_at is not None
    assert timedelta(seconds=29) < delivery.lease_expires_at - clock.now <= timedelta(seconds=30)
    assert await store.get_delivery("d1") == delivery


@pytest.mark.parametrize("max_running", [None, 2])
async def test_claim_for_another_workflow_than_the_runs_changes_nothing(
    store: RunStore, max_running: int | None
) -> None:
    await start(store)
    before = await store.get_delivery("d1")
    refused = await store.claim(
        "d1", lease_seconds=30, max_running=max_running, workflow_name="someone_else"
    )
    assert refused.outcome == "wrong_workflow"
    assert await store.get_delivery("d1") == before  # still pending, attempt 0
    claimed = await store.claim("d1", lease_seconds=30, max_running=max_running, workflow_name="wf")
    assert claimed.outcome == "claimed"


async def test_claim_of_a_done_delivery_reports_done(store: RunStore) -> None:
    await start(store)
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "done")
    claimed = await store.claim("d1", lease_seconds=30)
    assert claimed.outcome == "done"
    assert claimed.delivery is not None and claimed.delivery.attempt == 1


async def test_claim_of_an_unknown_delivery_reports_missing(store: RunStore) -> None:
    assert (await store.claim("nope", lease_seconds=30)).outcome == "missing"


async def test_claim_of_a_delivery_not_yet_due_reports_not_due(
    store: RunStore, clock: FakeClock
) -> None:
    later = clock.now + timedelta(seconds=60)
    await store.create_run(NewRun("run-1", "wf", {}, {}), [new_delivery("d1", not_before=later)])
    assert (await store.claim("d1", lease_seconds=30)).outcome == "not_due"
    clock.advance(61)
    assert (await store.claim("d1", lease_seconds=30)).outcome == "claimed"


async def test_claim_of_a_running_delivery_with_a_live_lease_reports_leased(
    store: RunStore,
) -> None:
    await start(store)
    await claim(store, "d1")
    claimed = await store.claim("d1", lease_seconds=30)
    assert claimed.outcome == "leased"
    assert (await store.get_delivery("d1")).attempt == 1


async def test_claim_of_a_running_delivery_with_an_expired_lease_starts_the_next_attempt(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    await claim(store, "d1", lease=10)
    clock.advance(11)
    second = await claim(store, "d1")
    assert second.attempt == 2 and second.fence == Fence("d1", 2)


async def test_claim_in_a_finished_run_reports_run_finished(store: RunStore) -> None:
    await start(store, deliveries=("d1", "d2"))
    async with store.locked("run-1") as txn:
        txn.set_status("cancelled")
    assert (await store.claim("d2", lease_seconds=30)).outcome == "run_finished"


async def test_claim_over_max_running_of_the_step_reports_busy(store: RunStore) -> None:
    await store.create_run(
        NewRun("run-1", "wf", {}, {}),
        [new_delivery("a1"), new_delivery("a2"), new_delivery("a3"), new_delivery("b1", "b")],
    )
    await claim(store, "a1")
    assert (await store.claim("a2", lease_seconds=30, max_running=2)).outcome == "claimed"
    assert (await store.claim("a3", lease_seconds=30, max_running=2)).outcome == "busy"
    assert (await store.claim("b1", lease_seconds=30, max_running=1)).outcome == "claimed"
    assert (await store.get_delivery("a3")).status == "pending"


async def test_claim_does_not_count_running_deliveries_with_expired_leases_as_busy(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store, deliveries=("a1", "a2"))
    await claim(store, "a1", lease=10)
    assert (await store.claim("a2", lease_seconds=30, max_running=1)).outcome == "busy"
    clock.advance(11)
    assert (await store.claim("a2", lease_seconds=30, max_running=1)).outcome == "claimed"
    # the re-claim of an expired delivery does not count itself
    assert (await store.claim("a1", lease_seconds=30, max_running=2)).outcome == "claimed"


# --- fencing ---------------------------------------------------------------------------


async def test_a_write_from_a_superseded_attempt_is_fenced_out_and_changes_nothing(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    zombie = await claim(store, "d1", lease=10)
    clock.advance(11)
    current = await claim(store, "d1")
    with pytest.raises(FencedOutError, match="attempt 1") as raised:
        async with store.locked("run-1", zombie.fence) as txn:
            txn.set_state({"count": 666})
            txn.finish_delivery(zombie.fence, "done")
    assert raised.value.delivery_id == "d1" and raised.value.attempt == 1
    assert (await store.get_run("run-1")).state == {"count": 0}
    assert await store.get_delivery("d1") == current


async def test_a_claim_does_not_wait_for_a_block_on_another_delivery_of_the_run(
    store: RunStore, store_url: str | None
) -> None:
    if store_url is not None and store_url.startswith("sqlite"):
        pytest.skip("on SQLite every writer waits for the database-wide write lock")
    await start(store, deliveries=("d1", "d2"))
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        claimed = await asyncio.wait_for(store.claim("d2", lease_seconds=30), WAIT)
        txn.set_state({"count": 1})
    assert claimed.outcome == "claimed"
    assert (await store.get_run("run-1")).state == {"count": 1}


async def test_a_claim_and_a_block_fenced_on_the_same_delivery_never_both_win(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    d1 = await claim(store, "d1", lease=10)
    inside = asyncio.Event()
    order: list[str] = []

    async def block() -> None:
        try:
            async with store.locked("run-1", d1.fence) as txn:
                txn.set_state({"count": 1})
                inside.set()
                await asyncio.sleep(0.2)  # the claim runs (or waits) meanwhile
            order.append("committed")
        except FencedOutError:
            order.append("fenced out")

    async def reclaim() -> None:
        await inside.wait()
        clock.advance(11)  # the lease of attempt 1 has expired
        assert (await claim(store, "d1")).attempt == 2
        order.append("claimed")

    await asyncio.wait_for(asyncio.gather(block(), reclaim()), WAIT)
    state = (await store.get_run("run-1")).state
    # Either the claim waited for the block's commit, or it won and the block was refused.
    assert (order, state) in [
        (["committed", "claimed"], {"count": 1}),
        (["claimed", "fenced out"], {"count": 0}),
    ]


async def test_a_claim_racing_a_completion_of_the_same_delivery_sees_it_done_or_wins(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    d1 = await claim(store, "d1", lease=10)
    inside = asyncio.Event()
    order: list[str] = []

    async def complete() -> None:
        try:
            async with store.locked("run-1", d1.fence) as txn:
                inside.set()
                await asyncio.sleep(0.2)  # the claim runs (or waits) meanwhile
                txn.finish_delivery(d1.fence, "done")
            order.append("completed")
        except FencedOutError:
            order.append("fenced out")

    async def reclaim() -> None:
        await inside.wait()
        clock.advance(11)
        order.append((await store.claim("d1", lease_seconds=30)).outcome)

    await asyncio.wait_for(asyncio.gather(complete(), reclaim()), WAIT)
    # The two coroutines resume from their threads in either order: compare the outcomes.
    assert sorted(order) in (["completed", "done"], ["claimed", "fenced out"])
    final = await store.get_delivery("d1")
    assert (final.status, final.attempt) in (("done", 1), ("running", 2))


async def test_locked_with_the_fence_of_a_never_claimed_delivery_is_fenced_out(
    store: RunStore,
) -> None:
    await start(store)
    with pytest.raises(FencedOutError):
        async with store.locked("run-1", Fence("d1", 0)):
            pytest.fail("the body must not run")


async def test_finish_delivery_from_a_superseded_attempt_raises_at_the_call(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    zombie = await claim(store, "d1", lease=10)
    clock.advance(11)
    current = await claim(store, "d1")
    async with store.locked("run-1") as txn:
        with pytest.raises(FencedOutError):
            txn.finish_delivery(zombie.fence, "done")
        with pytest.raises(FencedOutError):
            txn.reschedule_delivery(zombie.fence, clock.now, {})
        txn.set_state({"count": 1})  # the transaction itself is still usable
    assert await store.get_delivery("d1") == current
    assert (await store.get_run("run-1")).state == {"count": 1}


async def test_finish_delivery_closes_the_delivery_and_clears_its_lease(store: RunStore) -> None:
    await start(store)
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "failed", {"type": "KeyError"})
    failed = await store.get_delivery("d1")
    assert (failed.status, failed.error, failed.attempt) == ("failed", {"type": "KeyError"}, 1)
    assert failed.lease_expires_at is None


async def test_finishing_a_delivery_twice_in_one_transaction_is_fenced_out(
    store: RunStore,
) -> None:
    await start(store)
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "done")
        with pytest.raises(FencedOutError):
            txn.finish_delivery(d1.fence, "failed")
    assert (await store.get_delivery("d1")).status == "done"


async def test_reschedule_delivery_puts_it_back_to_pending_due_later(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    d1 = await claim(store, "d1")
    due = clock.now + timedelta(seconds=5)
    async with store.locked("run-1", d1.fence) as txn:
        txn.reschedule_delivery(d1.fence, due, {"retry": {"count": 1}})
    pending = await store.get_delivery("d1")
    assert (pending.status, pending.not_before, pending.extra) == (
        "pending",
        due,
        {"retry": {"count": 1}},
    )
    assert pending.lease_expires_at is None and pending.attempt == 1
    assert (await store.claim("d1", lease_seconds=30)).outcome == "not_due"
    clock.advance(6)
    assert (await claim(store, "d1")).attempt == 2


async def test_extend_lease_moves_the_expiry_of_the_current_attempt(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    d1 = await claim(store, "d1", lease=10)
    clock.advance(8)
    assert await store.extend_lease(d1.fence, lease_seconds=10)
    clock.advance(8)  # past the first lease, inside the extended one
    assert (await store.claim("d1", lease_seconds=30)).outcome == "leased"


async def test_extend_lease_of_a_superseded_attempt_returns_false_and_changes_nothing(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    zombie = await claim(store, "d1", lease=10)
    clock.advance(11)
    current = await claim(store, "d1")
    assert not await store.extend_lease(zombie.fence, lease_seconds=100)
    assert await store.get_delivery("d1") == current


# --- journal ---------------------------------------------------------------------------


async def test_journal_mark_commits_with_the_edit_and_reads_back_its_result(
    store: RunStore,
) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        assert await txn.journal_get("d1", 0) is None
        txn.journal_put("d1", 0, {"returned": [1, 2]})
        txn.journal_put("d1", 1)
        txn.set_state({"count": 1})
    async with store.locked("run-1") as txn:
        first = await txn.journal_get("d1", 0)
        second = await txn.journal_get("d1", 1)
        assert await txn.journal_get("d1", 2) is None
        assert await txn.journal_get("other", 0) is None
    assert first is not None and (first.journal_id, first.index) == ("d1", 0)
    assert first.result == {"returned": [1, 2]}
    assert second is not None and second.result is None


async def test_journal_get_sees_a_mark_put_in_the_same_transaction(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        txn.journal_put("d1", 0, "r")
        mark = await txn.journal_get("d1", 0)
    assert mark is not None and mark.result == "r"


# --- stream ----------------------------------------------------------------------------


async def test_append_stream_numbers_entries_from_one_without_gaps(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        assert await txn.append_stream({"n": 1}) == 1
        assert await txn.append_stream({"n": 2}) == 2
    async with store.locked("run-1") as txn:
        assert await txn.append_stream({"n": 3}) == 3
    entries = await store.read_stream("run-1")
    assert [(e.run_id, e.seq, e.event) for e in entries] == [
        ("run-1", 1, {"n": 1}),
        ("run-1", 2, {"n": 2}),
        ("run-1", 3, {"n": 3}),
    ]
    assert all(e.created_at.tzinfo is not None for e in entries)


async def test_append_stream_with_a_repeated_dedupe_key_returns_the_first_seq(
    store: RunStore,
) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        assert await txn.append_stream({"n": 1}, "k1") == 1
        assert await txn.append_stream({"n": 1}, "k1") == 1
    async with store.locked("run-1") as txn:
        assert await txn.append_stream({"n": 2}) == 2
        assert await txn.append_stream({"again": True}, "k1") == 1
    assert [e.event for e in await store.read_stream("run-1")] == [{"n": 1}, {"n": 2}]


async def test_append_stream_in_a_rolled_back_transaction_leaves_no_gap(
    store: RunStore,
) -> None:
    await start(store)
    with pytest.raises(RuntimeError):
        async with store.locked("run-1") as txn:
            await txn.append_stream({"n": 1}, "k")
            raise RuntimeError
    async with store.locked("run-1") as txn:
        assert await txn.append_stream({"n": 2}, "k") == 1


async def test_read_stream_returns_entries_after_seq_up_to_limit(store: RunStore) -> None:
    await start(store)
    async with store.locked("run-1") as txn:
        for n in range(5):
            await txn.append_stream({"n": n})
    assert [e.seq for e in await store.read_stream("run-1", after_seq=2)] == [3, 4, 5]
    assert [e.seq for e in await store.read_stream("run-1", after_seq=1, limit=2)] == [2, 3]
    assert await store.read_stream("run-1", after_seq=5) == []


# --- sweeping --------------------------------------------------------------------------


STALE = 10.0
SERVED = [("wf", "step_a"), ("wf", "step_b")]


async def due_ids(
    store: RunStore,
    clock: FakeClock,
    limit: int = 100,
    served: list[tuple[str, str]] = SERVED,
    idle: list[tuple[str, str]] = SERVED,
) -> list[str]:
    """What one sweep takes (every queue empty unless ``idle`` says otherwise)."""
    stale_before = clock.now - timedelta(seconds=STALE)
    due = await store.take_due(stale_before=stale_before, served=served, idle=idle, limit=limit)
    assert all(d.workflow_name == "wf" for d in due)
    return [d.delivery.delivery_id for d in due]


async def test_take_due_leaves_a_pending_delivery_alone_until_it_is_stale(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store, deliveries=("d1", "d2"))
    assert await due_ids(store, clock) == []  # just published after its commit
    clock.advance(STALE + 1)
    assert await due_ids(store, clock) == ["d1", "d2"]


async def test_take_due_hands_a_delivery_to_one_sweep_and_again_only_when_stale_again(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    clock.advance(STALE + 1)
    assert await due_ids(store, clock) == ["d1"]
    assert (await store.get_delivery("d1")).published_at is not None
    assert await due_ids(store, clock) == []  # a second sweeper finds it taken
    clock.advance(STALE / 2)
    assert await due_ids(store, clock) == []
    clock.advance(STALE / 2 + 1)
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_keeps_pending_deliveries_whose_queue_is_not_empty(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    clock.advance(STALE * 10)
    # Queued behind busy workers rather than lost: publishing again would grow the queue.
    assert await due_ids(store, clock, idle=[]) == []
    assert await due_ids(store, clock, idle=[("wf", "step_a")]) == ["d1"]


async def test_take_due_counts_a_delayed_delivery_from_its_not_before(
    store: RunStore, clock: FakeClock
) -> None:
    later = clock.now + timedelta(seconds=60)
    await store.create_run(NewRun("run-1", "wf", {}, {}), [new_delivery("d1", not_before=later)])
    clock.advance(61)
    assert await due_ids(store, clock) == []  # its countdown message came due just now
    clock.advance(STALE)
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_counts_a_rescheduled_delivery_from_its_new_not_before(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        txn.reschedule_delivery(d1.fence, clock.now + timedelta(seconds=5), {})
    clock.advance(STALE)
    assert await due_ids(store, clock) == []
    clock.advance(6)
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_takes_a_running_delivery_once_its_lease_expired_whatever_the_queue(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store, deliveries=("d1",))
    await claim(store, "d1", lease=10)
    assert await due_ids(store, clock, idle=[]) == []
    clock.advance(11)
    assert await due_ids(store, clock, idle=[]) == ["d1"]
    assert await due_ids(store, clock, idle=[]) == []  # published since its lease expired
    clock.advance(STALE + 1)
    # That message may wait behind a backlog: again only once its queue is empty.
    assert await due_ids(store, clock, idle=[]) == []
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_counts_a_message_published_again_from_when_it_is_due(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store)
    clock.advance(STALE + 1)
    # A busy claim publishes the delivery again with a countdown and says so.
    await store.mark_published("d1", clock.now + timedelta(seconds=0.2))
    assert await due_ids(store, clock) == []
    clock.advance(STALE + 1)
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_takes_a_pending_delivery_never_stamped(
    store: RunStore, store_url: str | None, clock: FakeClock
) -> None:
    if store_url is None:
        pytest.skip("rows written by an older version: SQL stores only")
    await start(store)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE cw_deliveries SET published_at = NULL"))
    finally:
        engine.dispose()
    assert await due_ids(store, clock) == ["d1"]


async def test_take_due_takes_only_steps_this_sweeper_serves(
    store: RunStore, clock: FakeClock
) -> None:
    await store.create_run(
        NewRun("run-1", "wf", {}, {}), [new_delivery("d1"), new_delivery("d2", step="other")]
    )
    # another project's workflow in the same database
    await store.create_run(NewRun("run-2", "theirs", {}, {}), [new_delivery("d3")])
    clock.advance(STALE + 1)
    assert await due_ids(store, clock) == ["d1"]
    assert await due_ids(store, clock, served=[("wf", "other")], idle=[("wf", "other")]) == ["d2"]


async def test_take_due_excludes_closed_ones_and_respects_the_limit_oldest_first(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store, deliveries=("d1", "d2", "d3", "d4"))
    d1 = await claim(store, "d1")
    async with store.locked("run-1", d1.fence) as txn:
        txn.finish_delivery(d1.fence, "done")
    clock.advance(STALE + 1)
    assert sorted(await due_ids(store, clock, limit=2)) == ["d2", "d3"]
    assert await due_ids(store, clock) == ["d4"]


async def test_take_due_waits_for_the_sweeper_already_at_work(
    store: RunStore, store_url: str | None, clock: FakeClock
) -> None:
    if store_url is None or not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's advisory lock; SQLite sweepers queue on BEGIN IMMEDIATE")
    await start(store)
    clock.advance(STALE + 1)
    conninfo = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended('cw-sweeper', 0))")
        sweep = asyncio.ensure_future(due_ids(store, clock))
        done, _ = await asyncio.wait([sweep], timeout=0.5)
        assert not done  # one sweeper at a time
        other.execute("SELECT pg_advisory_unlock(hashtextextended('cw-sweeper', 0))")
        assert await asyncio.wait_for(sweep, WAIT) == ["d1"]


async def test_a_pooled_connection_dropped_by_the_server_is_replaced(
    store: RunStore, store_url: str | None
) -> None:
    if store_url is None or not store_url.startswith("postgresql"):
        pytest.skip("only a server can drop connections")
    await start(store)
    await store.get_run("run-1")  # leaves a connection in the pool
    conninfo = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    async with store.locked("run-1") as txn:
        txn.set_state({"count": 1})
    assert (await store.get_run("run-1")).state == {"count": 1}


# --- JSON stores -----------------------------------------------------------------------


class NotJson:
    pass


async def test_a_value_that_is_not_json_raises_state_validation_error_naming_its_path(
    store: RunStore,
) -> None:
    if store.payloads != "json":
        pytest.skip("this store keeps live objects")
    await start(store)
    async with store.locked("run-1") as txn:
        with pytest.raises(StateValidationError, match=r"state\['a'\]\['b'\]\[1\]: object of"):
            txn.set_state({"a": {"b": [1, NotJson()]}})
        with pytest.raises(StateValidationError, match=r"meta\['x'\]: .*nan"):
            txn.set_meta({"x": float("nan")})
        with pytest.raises(StateValidationError, match=r"deliveries\[0\]\.event"):
            txn.add_deliveries([NewDelivery("d9", "s", {"when": UTC})])
    with pytest.raises(StateValidationError, match=r"state\['k'\]: object of type NotJson"):
        await store.create_run(NewRun("run-2", "wf", {"k": NotJson()}, {}), [])
    assert (await store.get_run("run-1")).state == {"count": 0}
    assert await statuses(store) == {"d1": "pending"}
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-2")


# --- SQL store setup errors (no parametrization: they need no working database) ---------


async def test_sql_store_on_an_unreachable_database_raises_unavailable_with_password_masked() -> (
    None
):
    store = SqlRunStore("postgresql+psycopg://cw:s3cret@127.0.0.1:1/runs")
    try:
        with pytest.raises(StoreUnavailableError, match=r"cw:\*\*\*@127\.0\.0\.1:1/runs") as raised:
            await store.get_run("run-1")
        assert "s3cret" not in str(raised.value)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["mysql+pymysql://cw:s3cret@db/runs", "not a url", "sqlite://", "sqlite:///:memory:"]
)
def test_sql_store_with_an_unusable_url_raises_unavailable(url: str) -> None:
    with pytest.raises(StoreUnavailableError) as raised:
        SqlRunStore(url)
    assert "s3cret" not in str(raised.value)


async def test_sql_store_on_a_database_without_schema_says_how_to_create_it(
    tmp_path: Path,
) -> None:
    store = SqlRunStore(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(StoreError, match="create_schema=True"):
            await store.get_run("run-1")
    finally:
        await store.close()


async def test_sql_store_with_create_schema_migrates_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    store = SqlRunStore(url, create_schema=True)
    try:
        await start(store)
        assert (await store.get_run("run-1")).status == "running"
    finally:
        await store.close()
    assert current(url) is not None


async def test_sql_store_on_a_postgres_database_that_does_not_exist_raises_unavailable() -> None:
    store = SqlRunStore("postgresql+psycopg://postgres:pw@127.0.0.1:5432/cw_no_such_database")
    try:
        with pytest.raises(StoreUnavailableError, match=r"postgres:\*\*\*@") as raised:
            await store.get_run("run-1")
        assert ":pw@" not in str(raised.value)
    finally:
        await store.close()


# --- deadlines and lost messages ------------------------------------------------------


async def test_expired_runs_lists_only_unfinished_runs_past_their_deadline(
    store: RunStore, clock: Any
) -> None:
    past = clock.now - timedelta(seconds=5)
    future = clock.now + timedelta(hours=1)
    await start(store, "late", ("a",), deadline_at=past)
    await start(store, "early", ("b",), deadline_at=future)
    await start(store, "done", ("c",), deadline_at=past)
    await start(store, "none", ("d",))
    async with store.locked("done") as txn:
        txn.set_status("completed", result={"r": 1})
    assert [r.run_id for r in await store.expired_runs()] == ["late"]


# --- listing and purging -----------------------------------------------------------------


async def test_list_runs_filters_by_status_workflow_and_time_newest_first(
    store: RunStore, clock: FakeClock
) -> None:
    for name, workflow in (("a", "wf"), ("b", "other"), ("c", "wf"), ("d", "wf")):
        await store.create_run(NewRun(name, workflow, {}, {}), [])
        clock.advance(1)
    async with store.locked("c") as txn:
        txn.set_status("completed", result={"r": 1})
    ids = [r.run_id for r in await store.list_runs(RunQuery())]
    assert ids == ["d", "c", "b", "a"]
    by_workflow = await store.list_runs(RunQuery(workflow_name="wf"))
    assert [r.run_id for r in by_workflow] == ["d", "c", "a"]
    running = await store.list_runs(RunQuery(statuses=("running",), workflow_name="wf"))
    assert [r.run_id for r in running] == ["d", "a"]
    a, d = await store.get_run("a"), await store.get_run("d")
    window = RunQuery(created_after=a.created_at, created_before=d.created_at)
    assert [r.run_id for r in await store.list_runs(window)] == ["c", "b", "a"]


async def test_list_runs_pages_by_cursor_without_gaps_or_repeats(
    store: RunStore, clock: FakeClock
) -> None:
    for n in range(7):
        await store.create_run(NewRun(f"r{n}", "wf", {}, {}), [])
        if n % 2:
            clock.advance(1)  # some runs share a second, the cursor tells them apart
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_runs(RunQuery(limit=3, cursor=cursor))
        if not page:
            break
        seen.extend(r.run_id for r in page)
        cursor = (page[-1].created_at, page[-1].run_id)
    assert sorted(seen) == [f"r{n}" for n in range(7)] and len(seen) == 7


async def test_delete_runs_removes_finished_runs_with_everything_of_theirs(
    store: RunStore, clock: FakeClock
) -> None:
    await start(store, "old", ("o1",))
    await start(store, "live", ("l1",))
    d = await claim(store, "o1")
    async with store.locked("old", d.fence) as txn:
        txn.journal_put(d.journal_id, 0, {"edit": 1})
        await txn.append_stream({"n": 1})
        txn.finish_delivery(d.fence, "done")
        txn.set_status("completed", result={"r": 1})
    clock.advance(3600)
    cutoff = clock.now
    await start(store, "new", ("n1",))
    async with store.locked("new") as txn:
        txn.set_status("failed", error={"kind": "step"})
    assert await store.delete_runs(finished_before=cutoff) == 1  # not running, not newer
    with pytest.raises(RunNotFoundError):
        await store.get_run("old")
    with pytest.raises(DeliveryNotFoundError):
        await store.get_delivery("o1")
    async with store.locked("live") as txn:
        assert await txn.journal_get(d.journal_id, 0) is None
    assert {r.run_id for r in await store.list_runs(RunQuery())} == {"live", "new"}
    assert await store.delete_runs(finished_before=cutoff) == 0


async def test_delete_run_removes_one_finished_run_and_keeps_unfinished_ones(
    store: RunStore,
) -> None:
    await start(store, "done", ("x1",))
    await start(store, "live", ("y1",))
    async with store.locked("done") as txn:
        await txn.append_stream({"n": 1})
        txn.set_status("cancelled")
    assert await store.delete_run("live") is False  # still running: kept
    assert await store.delete_run("unknown") is False
    assert await store.delete_run("done") is True
    with pytest.raises(RunNotFoundError):
        await store.get_run("done")
    with pytest.raises(DeliveryNotFoundError):
        await store.get_delivery("x1")
    assert (await store.get_run("live")).status == "running"
    assert await store.delete_run("done") is False


async def test_read_streams_returns_new_entries_of_several_runs_in_one_read(
    store: RunStore,
) -> None:
    for run_id, count in (("a", 3), ("b", 2), ("c", 0)):
        await start(store, run_id, (f"{run_id}1",))
        async with store.locked(run_id) as txn:
            for n in range(count):
                await txn.append_stream({"run": run_id, "n": n})
    found = await store.read_streams({"a": 1, "b": 0, "c": 0, "gone": 0})
    assert {run_id: [e.seq for e in entries] for run_id, entries in found.items()} == {
        "a": [2, 3],
        "b": [1, 2],
    }
    assert [e.event for e in found["b"]] == [{"run": "b", "n": 0}, {"run": "b", "n": 1}]
    assert await store.read_streams({"a": 3, "b": 2}) == {}
    capped = await store.read_streams({"a": 0, "b": 0}, limit=4)
    assert sum(len(entries) for entries in capped.values()) == 4
