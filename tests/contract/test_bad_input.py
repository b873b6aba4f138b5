"""The run store contract for bad input: each store refuses it with a clear error.

A run id started again must mean the same start (else RunConflictError). A JSON store
(SQLite, PostgreSQL) refuses what JSON or PostgreSQL cannot keep (a NUL character) and
state over ``max_state_bytes``, the same way on both databases; the in-memory store keeps
live objects, so it takes them as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from celery_workflows.errors import (
    RunConflictError,
    RunNotFoundError,
    StateValidationError,
    StoreError,
)
from celery_workflows.store.base import NewDelivery, NewRun, RunStore
from celery_workflows.store.memory import InMemoryRunStore
from celery_workflows.store.sql import SqlRunStore

if TYPE_CHECKING:
    from tests.contract.conftest import FakeClock

NUL = "a\x00b"


def delivery(delivery_id: str, event: object = None) -> NewDelivery:
    return NewDelivery(delivery_id, "step_a", event or {"type": "Ev", "id": delivery_id})


def new_run(run_id: str = "run-1", workflow: str = "wf", fingerprint: str | None = "f1") -> NewRun:
    return NewRun(run_id, workflow, {"count": 0}, {}, start_fingerprint=fingerprint)


async def pending(store: RunStore, run_id: str = "run-1") -> list[str]:
    return [d.delivery_id for d in await store.list_deliveries(run_id)]


# --- the same run id, started again -----------------------------------------------------


async def test_create_run_again_with_the_same_workflow_and_fingerprint_returns_the_run(
    store: RunStore,
) -> None:
    first, created = await store.create_run(new_run(), [delivery("d1")])
    assert created and first.start_fingerprint == "f1"
    again, created = await store.create_run(new_run(), [delivery("d2")])
    assert not created and again.run_id == "run-1" and again.start_fingerprint == "f1"
    assert (await store.get_run("run-1")).start_fingerprint == "f1"
    assert await pending(store) == ["d1"]


async def test_create_run_again_with_another_workflow_raises_conflict_and_writes_nothing(
    store: RunStore,
) -> None:
    await store.create_run(new_run(), [delivery("d1")])
    with pytest.raises(RunConflictError) as raised:
        await store.create_run(new_run(workflow="other"), [delivery("d2")])
    message = str(raised.value)
    assert "run 'run-1'" in message and "'wf'" in message and "'other'" in message
    assert "new run id" in message
    assert raised.value.run_id == "run-1" and raised.value.field == "workflow"
    assert isinstance(raised.value, StoreError) and isinstance(raised.value, ValueError)
    assert await pending(store) == ["d1"]
    with pytest.raises(StoreError):  # the conflicting delivery was not written either
        await store.get_delivery("d2")


async def test_create_run_again_with_another_start_fingerprint_raises_conflict(
    store: RunStore,
) -> None:
    await store.create_run(new_run(), [delivery("d1")])
    with pytest.raises(RunConflictError, match=r"run 'run-1'.*start event") as raised:
        await store.create_run(new_run(fingerprint="f2"), [delivery("d2")])
    assert raised.value.field == "start event"
    assert await pending(store) == ["d1"]


async def test_create_run_under_an_existing_idempotency_key_checks_the_first_run(
    store: RunStore,
) -> None:
    keyed = NewRun("run-1", "wf", {}, {}, idempotency_key="order-7", start_fingerprint="f1")
    await store.create_run(keyed, [])
    same = NewRun("run-2", "wf", {}, {}, idempotency_key="order-7", start_fingerprint="f1")
    record, created = await store.create_run(same, [])
    assert not created and record.run_id == "run-1"
    other = NewRun("run-3", "wf", {}, {}, idempotency_key="order-7", start_fingerprint="f9")
    with pytest.raises(RunConflictError, match="run 'run-1'"):
        await store.create_run(other, [])
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-3")


async def test_a_run_without_a_fingerprint_is_compared_by_workflow_only(store: RunStore) -> None:
    # Rows made before fingerprints existed (or by a caller that gives none).
    await store.create_run(new_run(fingerprint=None), [])
    record, created = await store.create_run(new_run(fingerprint="f1"), [])
    assert not created and record.start_fingerprint is None
    with pytest.raises(RunConflictError):
        await store.create_run(new_run(workflow="other", fingerprint="f1"), [])


# --- NUL characters ---------------------------------------------------------------------


async def test_a_nul_character_is_refused_by_a_json_store_naming_its_path(
    store: RunStore,
) -> None:
    await store.create_run(new_run(), [delivery("d1")])
    if store.payloads != "json":
        async with store.locked("run-1") as txn:
            txn.set_state({"text": NUL})
        assert (await store.get_run("run-1")).state == {"text": NUL}
        return
    async with store.locked("run-1") as txn:
        with pytest.raises(StateValidationError, match=r"state\['a'\]\[1\]: .*NUL") as raised:
            txn.set_state({"a": ["ok", NUL]})
        assert "run 'run-1'" in str(raised.value)
        with pytest.raises(StateValidationError, match=r"state: key .*NUL"):
            txn.set_state({NUL: 1})
        with pytest.raises(StateValidationError, match=r"meta\['m'\]: .*NUL"):
            txn.set_meta({"m": NUL})
        with pytest.raises(StateValidationError, match=r"deliveries\[0\]\.event\['t'\]: .*NUL"):
            txn.add_deliveries([delivery("d2", {"t": NUL})])
        with pytest.raises(StateValidationError, match=r"stream\[1\]\['t'\]: .*NUL"):
            await txn.append_stream({"t": NUL})
    with pytest.raises(StateValidationError, match=r"state\['k'\]: .*NUL"):
        await store.create_run(NewRun("run-2", "wf", {"k": NUL}, {}), [])
    assert (await store.get_run("run-1")).state == {"count": 0}
    assert await pending(store) == ["d1"]


async def test_an_escaped_backslash_u0000_text_is_not_a_nul_character(store: RunStore) -> None:
    await store.create_run(new_run(), [])
    async with store.locked("run-1") as txn:
        txn.set_state({"text": "\\u0000"})
    assert (await store.get_run("run-1")).state == {"text": "\\u0000"}


# --- the state size limit ---------------------------------------------------------------


@pytest.fixture
async def limited(store_url: str | None, clock: FakeClock) -> AsyncIterator[RunStore]:
    """The store under test with ``max_state_bytes=100`` (in-memory: no limit)."""
    limited_store: RunStore = (
        InMemoryRunStore(clock=clock)
        if store_url is None
        else SqlRunStore(store_url, clock=clock, max_state_bytes=100)
    )
    yield limited_store
    await limited_store.close()


async def test_state_over_max_state_bytes_is_refused_naming_run_size_and_limit(
    limited: RunStore,
) -> None:
    await limited.create_run(new_run(), [])
    big = {"blob": "x" * 200}
    if limited.payloads != "json":
        async with limited.locked("run-1") as txn:
            txn.set_state(big)  # live objects have no JSON size
        return
    async with limited.locked("run-1") as txn:
        txn.set_state({"blob": "x" * 80})  # 91 bytes as JSON: under the limit
        with pytest.raises(StateValidationError) as raised:
            txn.set_state(big)
    message = str(raised.value)
    assert "run 'run-1'" in message and "211 bytes" in message
    assert "max_state_bytes" in message and "100" in message
    assert (await limited.get_run("run-1")).state == {"blob": "x" * 80}
    with pytest.raises(StateValidationError, match="max_state_bytes"):
        await limited.create_run(NewRun("run-2", "wf", big, {}), [])
    with pytest.raises(RunNotFoundError):
        await limited.get_run("run-2")


def test_the_default_state_limit_is_ten_megabytes() -> None:
    from celery_workflows.store.sql.store import DEFAULT_MAX_STATE_BYTES

    assert DEFAULT_MAX_STATE_BYTES == 10_000_000
