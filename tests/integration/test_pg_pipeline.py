"""PostgreSQL's pipelined hot path writes exactly what the plain SQLAlchemy path writes.

The same script of store calls runs twice on real PostgreSQL, once with the hot path and
once without it (``Database.hot = None``); every table must end up with the same rows
(timestamps aside) and every claim with the same outcome. Concurrent claims through the
pipelined path must still respect ``max_running``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from celery_workflows.errors import FencedOutError
from celery_workflows.store.base import NewDelivery, NewRun, utcnow
from celery_workflows.store.sql import SqlRunStore

pytestmark = pytest.mark.integration

TABLES = {
    "cw_runs": "run_id",
    "cw_deliveries": "delivery_id",
    "cw_journal": "journal_id, edit_index",
    "cw_stream": "run_id, seq",
}
TIMESTAMPS = {"created_at", "updated_at", "lease_expires_at", "not_before", "published_at"}


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    conninfo = url.replace("postgresql+psycopg", "postgresql")
    out: dict[str, list[dict[str, Any]]] = {}
    with psycopg.connect(conninfo) as conn:
        for table, order in TABLES.items():
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
            names = [c.name for c in cur.description or ()]
            out[table] = [
                {k: v for k, v in zip(names, row, strict=True) if k not in TIMESTAMPS}
                for row in cur.fetchall()
            ]
    return out


async def _script(store: SqlRunStore) -> list[str]:
    """Store calls covering every kind of write; returns the claim outcomes it saw."""
    outcomes = []
    starts = [NewDelivery("r1:a", "a", {"x": 1}), NewDelivery("r1:b", "b", {"y": "it's"})]
    await store.create_run(NewRun("r1", "wf", state={"n": 0}, meta={"m": 1}), starts)
    for delivery_id in ("r1:a", "r1:a", "r1:b", "nope"):
        claim = await store.claim(delivery_id, lease_seconds=30, max_running=1)
        outcomes.append(claim.outcome)
    a = (await store.get_delivery("r1:a")).fence
    b = (await store.get_delivery("r1:b")).fence
    async with store.locked("r1", a) as txn:
        txn.journal_put("r1:a", 0, {"seen": txn.run.state})
        txn.set_state({"n": 1, "nested": {"q": [1, 2.5, None]}})
    async with store.locked("r1", a) as txn:
        await txn.append_stream({"event": "progress"}, "k1")
        txn.add_deliveries([NewDelivery("r1:c", "c", {"z": True}, parent_id="r1:a")])
        txn.finish_delivery(a, "done")
        # b is fenced too, but not the fence this block was opened with (plain path).
        txn.reschedule_delivery(b, utcnow() + timedelta(seconds=60), {"retry": {"count": 1}})
        txn.set_meta({"m": 2})
    with pytest.raises(FencedOutError):
        async with store.locked("r1", a) as txn:
            txn.set_state({"never": True})
    async with store.locked("r1") as txn:
        await txn.append_stream({"event": "stop"}, "r1:stop")
        txn.set_status("completed", result={"value": 3})
    outcomes.append((await store.claim("r1:c", lease_seconds=30)).outcome)
    return outcomes


@pytest.fixture
def make_store(create_postgres_database: Callable[[], str]) -> Callable[[bool], SqlRunStore]:
    def make(pipelined: bool) -> SqlRunStore:
        store = SqlRunStore(create_postgres_database(), create_schema=True)
        assert store._db.hot is not None, "PostgreSQL through psycopg gets the hot path"
        if not pipelined:
            store._db.hot = None
        return store

    return make


async def test_pipelined_path_writes_what_the_plain_path_writes(
    make_store: Callable[[bool], SqlRunStore],
) -> None:
    results = []
    for pipelined in (True, False):
        store = make_store(pipelined)
        try:
            outcomes = await _script(store)
            results.append((outcomes, _rows(store._db.url.render_as_string(False))))
        finally:
            await store.close()
    (fast_outcomes, fast_rows), (plain_outcomes, plain_rows) = results
    assert fast_outcomes == ["claimed", "leased", "claimed", "missing", "run_finished"]
    assert fast_outcomes == plain_outcomes
    assert fast_rows == plain_rows
    run = fast_rows["cw_runs"][0]
    assert run["state"] == {"n": 1, "nested": {"q": [1, 2.5, None]}}
    assert (run["status"], run["result"], run["meta"]) == ("completed", {"value": 3}, {"m": 2})
    statuses = {d["delivery_id"]: d["status"] for d in fast_rows["cw_deliveries"]}
    assert statuses == {"r1:a": "done", "r1:b": "cancelled", "r1:c": "cancelled"}


async def test_concurrent_pipelined_claims_respect_max_running(
    make_store: Callable[[bool], SqlRunStore],
) -> None:
    store = make_store(True)
    try:
        ids = [f"r1:{i}" for i in range(12)]
        await store.create_run(
            NewRun("r1", "wf", state={}, meta={}), [NewDelivery(i, "s", {}) for i in ids]
        )
        claims = await asyncio.gather(
            *(store.claim(i, lease_seconds=30, max_running=3) for i in ids)
        )
        outcomes = sorted(c.outcome for c in claims)
        assert outcomes == ["busy"] * 9 + ["claimed"] * 3
        claimed = [c.delivery for c in claims if c.outcome == "claimed"]
        assert all(d is not None and d.attempt == 1 and d.status == "running" for d in claimed)
    finally:
        await store.close()
