"""The rules every run store applies, in one place: the in-memory store runs them on its
records, the SQL store on the rows it read (and states the sweeper's rule in SQL too; the
contract suite holds the two together)."""

from __future__ import annotations

from datetime import datetime

from celery_workflows.errors import RunConflictError
from celery_workflows.store.base import (
    OPEN_DELIVERY_STATUSES,
    ClaimOutcome,
    DeliveryRecord,
    NewRun,
    RunQuery,
    RunRecord,
)

__all__ = [
    "check_same_start",
    "claim_outcome",
    "first_published_at",
    "lease_expired",
    "needs_republish",
    "new_run_record",
    "run_matches",
]


def claim_outcome(
    delivery: DeliveryRecord,
    run_finished: bool,
    now: datetime,
    live_running_same_step: int,
    max_running: int | None,
) -> ClaimOutcome:
    """Decide a claim of ``delivery`` read under the run lock; ``claimed`` means go ahead.

    ``live_running_same_step`` counts the *other* running deliveries of the same step and
    run whose lease has not expired (a dead attempt does not hold a ``num_workers`` slot).
    A delivery closed in any way (done, failed, cancelled) reports ``done``: there is
    nothing left to run, the message is acked and dropped.
    """
    if delivery.status == "done":
        return "done"
    if run_finished:
        return "run_finished"
    if delivery.status not in OPEN_DELIVERY_STATUSES:
        return "done"
    if delivery.status == "pending" and delivery.not_before and delivery.not_before > now:
        return "not_due"
    if delivery.status == "running" and not lease_expired(delivery, now):
        return "leased"
    if max_running is not None and live_running_same_step >= max_running:
        return "busy"
    return "claimed"


def lease_expired(delivery: DeliveryRecord, now: datetime) -> bool:
    """True when a running delivery's lease ran out (its attempt is presumed dead)."""
    return delivery.lease_expires_at is None or delivery.lease_expires_at < now


def needs_republish(
    delivery: DeliveryRecord, now: datetime, stale_before: datetime, *, idle: bool
) -> bool:
    """The sweeper's rule (see ``RunStore.take_due``); the SQL store states it in SQL.

    ``idle``: the delivery's queue is empty, so a pending one's message may be lost.
    """
    published = delivery.published_at
    if delivery.status == "running":
        if not lease_expired(delivery, now):
            return False
        expired = delivery.lease_expires_at
        # Once after its lease expired; again only like a pending one (its queue empty).
        return (
            published is None
            or (expired is not None and published < expired)
            or (idle and published < stale_before)
        )
    return delivery.status == "pending" and idle and (published is None or published < stale_before)


def check_same_start(existing: RunRecord, run: NewRun) -> None:
    """Raise RunConflictError unless creating ``run`` again may return ``existing``.

    A run id is an idempotency key for one start: the same workflow with the same start
    event. A caller that gives no fingerprint asks for no check; a run stored without one
    (made before fingerprints existed) is compared by workflow only.
    """
    if run.start_fingerprint is None:
        return
    where = f"run {existing.run_id!r}"
    if run.run_id != existing.run_id:
        where += f" (idempotency key {run.idempotency_key!r})"
    advice = "start it with the same workflow and start event, or use a new run id"
    if existing.workflow_name != run.workflow_name:
        raise RunConflictError(
            existing.run_id,
            "workflow",
            f"{where} already exists for workflow {existing.workflow_name!r}, not "
            f"{run.workflow_name!r}; nothing was written: {advice}",
        )
    known = existing.start_fingerprint
    if known is not None and known != run.start_fingerprint:
        raise RunConflictError(
            existing.run_id,
            "start event",
            f"{where} of workflow {existing.workflow_name!r} was started with another "
            f"start event (other start arguments); nothing was written: {advice}",
        )


def new_run_record(run: NewRun, now: datetime) -> RunRecord:
    """The record of a run just created from ``run``."""
    return RunRecord(
        run_id=run.run_id,
        workflow_name=run.workflow_name,
        status="running",
        state=run.state,
        meta=run.meta,
        result=None,
        error=None,
        code_version=run.code_version,
        idempotency_key=run.idempotency_key,
        created_at=now,
        updated_at=now,
        deadline_at=run.deadline_at,
        start_fingerprint=run.start_fingerprint,
    )


# --- the store -------------------------------------------------------------------------


def run_matches(run: RunRecord, query: RunQuery) -> bool:
    """Whether ``run`` is one ``query`` asks for (the cursor aside)."""
    return (
        (query.statuses is None or run.status in query.statuses)
        and (query.workflow_name is None or run.workflow_name == query.workflow_name)
        and (query.created_after is None or run.created_at >= query.created_after)
        and (query.created_before is None or run.created_at < query.created_before)
    )


def first_published_at(now: datetime, not_before: datetime | None) -> datetime:
    """``published_at`` of a new or rescheduled delivery: it is published right after its
    commit, and a delayed one becomes consumable at ``not_before``."""
    return not_before if not_before is not None and not_before > now else now
