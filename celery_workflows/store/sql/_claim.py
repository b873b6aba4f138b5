"""The claim of a delivery on the SQL store: the transaction, and its PostgreSQL pipeline.

Both decide with the same rule (:func:`~celery_workflows.store.rules.claim_outcome`);
the pipelined one runs the rule as one ``UPDATE`` and reads why when it did not claim.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from celery_workflows.store.base import OPEN_DELIVERY_STATUSES, TERMINAL_RUN_STATUSES, Claim
from celery_workflows.store.rules import claim_outcome
from celery_workflows.store.sql._db import Database
from celery_workflows.store.sql.queries import delivery_from_row

__all__ = ["claim_txn", "pipelined_claim"]


def pipelined_claim(
    db: Database,
    conn: Connection,
    delivery_id: str,
    lease: timedelta,
    max_running: int | None,
    workflow_name: str | None,
) -> Claim:
    """:func:`claim_txn` in one round trip (PostgreSQL, see ``PgHotPath.claim``)."""
    assert db.hot is not None
    now = db.clock()
    params = {
        "p_id": delivery_id,
        "p_now": now,
        "p_lease": now + lease,
        "p_max": max_running,
        "p_workflow": workflow_name,
    }
    found = db.hot.claim(conn, params, serialize=max_running is not None)
    if found.row is not None:
        return Claim("claimed", delivery_from_row(found.row))
    if found.facts is None:
        return Claim("missing")
    delivery = delivery_from_row(found.facts)
    if workflow_name is not None and found.facts.run_workflow != workflow_name:
        return Claim("wrong_workflow", delivery)
    finished = found.facts.run_status in TERMINAL_RUN_STATUSES
    outcome = claim_outcome(delivery, finished, now, found.facts.live_running, max_running)
    # Claimable when read but not when updated: the run finished or another claim
    # took the last slot in between. Busy makes the engine ask again shortly.
    return Claim("busy" if outcome == "claimed" else outcome, delivery)


def claim_txn(
    db: Database,
    conn: Connection,
    delivery_id: str,
    lease: timedelta,
    max_running: int | None,
    workflow_name: str | None,
) -> Claim:
    """Claim a delivery in the open transaction of ``conn``: lock its row, read its run,
    decide with the shared rule, and update it if claimed."""
    q = db.queries
    row = conn.execute(q.select_delivery_locked, {"p_id": delivery_id}).one_or_none()
    if row is None:
        return Claim("missing")
    delivery = delivery_from_row(row)
    run = conn.execute(q.select_run_status, {"p_run_id": delivery.run_id}).one()
    if workflow_name is not None and run.workflow_name != workflow_name:
        return Claim("wrong_workflow", delivery)
    status = run.status
    now = db.clock()
    busy = 0
    if max_running is not None and delivery.status in OPEN_DELIVERY_STATUSES:
        db.dialect.serialize_claims(conn, delivery.run_id, delivery.step)
        params = {"p_run_id": delivery.run_id, "p_step": delivery.step, "p_id": delivery_id}
        busy = conn.execute(q.count_live_running, {**params, "p_now": now}).scalar_one()
    finished = status in TERMINAL_RUN_STATUSES
    outcome = claim_outcome(delivery, finished, now, busy, max_running)
    if outcome != "claimed":
        return Claim(outcome, delivery)
    claimed = dataclasses.replace(
        delivery,
        status="running",
        attempt=delivery.attempt + 1,
        lease_expires_at=now + lease,
        updated_at=now,
    )
    lease_params: dict[str, Any] = {"p_id": delivery_id, "p_now": now}
    conn.execute(q.claim_delivery, {**lease_params, "p_lease": claimed.lease_expires_at})
    return Claim("claimed", claimed)
