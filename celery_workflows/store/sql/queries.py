"""Every statement of the SQL run store, one name each, built once per dialect.

Bind parameters are prefixed ``p_`` (SQLAlchemy reserves column names inside ``SET``).
Row-to-record conversion lives here too, next to the columns it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Insert,
    Integer,
    Row,
    String,
    Update,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    update,
)

from celery_workflows.store.base import (
    OPEN_DELIVERY_STATUSES,
    TERMINAL_RUN_STATUSES,
    DeliveryRecord,
    RunQuery,
    RunRecord,
    StreamEntry,
)
from celery_workflows.store.sql.dialects import CLAIM_LOCK_PREFIX, AnySelect, SqlDialect
from celery_workflows.store.sql.schema import deliveries, journal, runs, stream

#: The channel of run changes: the payload of each notification is a run id.
NOTIFY_CHANNEL = "cw_runs"

__all__ = [
    "NOTIFY_CHANNEL",
    "Queries",
    "delivery_from_row",
    "run_from_row",
    "stream_from_row",
    "streams_after",
]

_d = deliveries.c
_r = runs.c


def _const(value: str) -> ColumnElement[Any]:
    """A fixed status string written into the statement (not a parameter), so the
    statement compiles to SQL that needs only the ``p_`` parameters."""
    return literal_column(f"'{value}'", String)


def _statuses(values: frozenset[str] | tuple[str, ...]) -> list[ColumnElement[Any]]:
    return [_const(v) for v in sorted(values)]


def live_running(
    run_id: ColumnElement[Any], step: ColumnElement[Any], delivery_id: ColumnElement[Any]
) -> AnySelect:
    """How many other attempts of ``step`` in ``run_id`` are running on a live lease
    (``num_workers``): the one count, for the claim transaction and the pipelined claim."""
    o = deliveries.alias("o")
    return select(func.count()).where(
        o.c.run_id == run_id,
        o.c.step == step,
        o.c.status == _const("running"),
        o.c.delivery_id != delivery_id,
        o.c.lease_expires_at >= bindparam("p_now"),
    )


class Queries:
    """The statements, with the dialect's locking and upsert applied."""

    def __init__(self, dialect: SqlDialect) -> None:
        self.select_run: AnySelect = select(runs).where(_r.run_id == bindparam("p_run_id"))
        self.select_run_locked = dialect.lock_run(self.select_run)
        self.select_run_by_key: AnySelect = select(runs).where(
            _r.idempotency_key == bindparam("p_key")
        )
        self.select_run_status: AnySelect = select(_r.status, _r.workflow_name).where(
            _r.run_id == bindparam("p_run_id")
        )
        self.select_run_status_locked = dialect.lock_run(self.select_run_status)
        self.run_exists: AnySelect = select(_r.run_id).where(_r.run_id == bindparam("p_run_id"))
        # rowcount tells "created" from "already there"; SQLAlchemy keeps it for INSERT
        # only when asked.
        self.insert_run: Insert = dialect.insert_ignore(runs).execution_options(
            preserve_rowcount=True
        )
        self._init_deliveries(dialect)
        self._init_journal_and_stream(dialect)
        self._run_updates: dict[tuple[str, ...], Update] = {}
        # Queued in a transaction that appends to a run's stream or changes its status:
        # PostgreSQL delivers it at COMMIT (never for a rollback) to every LISTENer of
        # the channel (store/sql/_listen.py). None where there is no NOTIFY (SQLite).
        self.notify_run: AnySelect | None = (
            select(func.pg_notify(_const(NOTIFY_CHANNEL), bindparam("p_run_id", type_=String)))
            if dialect.name == "postgresql"
            else None
        )

    def _init_deliveries(self, dialect: SqlDialect) -> None:
        by_id = _d.delivery_id == bindparam("p_id")
        fenced = and_(by_id, _d.attempt == bindparam("p_attempt"), _d.status == _const("running"))
        self.insert_deliveries: Insert = dialect.insert_ignore(deliveries)
        self.select_delivery: AnySelect = select(deliveries).where(by_id)
        self.select_delivery_locked = dialect.lock_delivery(self.select_delivery)
        self.select_delivery_head: AnySelect = select(_d.run_id, _d.attempt, _d.status).where(by_id)
        self.select_delivery_fence = dialect.hold_fence(self.select_delivery_head)
        self.count_live_running = live_running(
            bindparam("p_run_id"), bindparam("p_step"), bindparam("p_id")
        )
        self.claim_delivery: Update = (
            update(deliveries)
            .where(by_id)
            .values(
                status="running",
                attempt=_d.attempt + 1,
                lease_expires_at=bindparam("p_lease"),
                updated_at=bindparam("p_now"),
            )
        )
        self.extend_lease: Update = (
            update(deliveries).where(fenced).values(lease_expires_at=bindparam("p_lease"))
        )
        self.finish_delivery: Update = (
            update(deliveries)
            .where(fenced)
            .values(
                status=bindparam("p_status"),
                error=bindparam("p_error"),
                lease_expires_at=null(),
                updated_at=bindparam("p_now"),
            )
        )
        self.reschedule_delivery: Update = (
            update(deliveries)
            .where(fenced)
            .values(
                status=_const("pending"),
                not_before=bindparam("p_not_before"),
                extra=bindparam("p_extra"),
                lease_expires_at=null(),
                published_at=bindparam("p_published_at"),
                updated_at=bindparam("p_now"),
            )
        )
        self.cancel_open_deliveries: Update = (
            update(deliveries)
            .where(
                _d.run_id == bindparam("p_run_id"),
                _d.status.in_(_statuses(OPEN_DELIVERY_STATUSES)),
            )
            .values(
                status=_const("cancelled"), lease_expires_at=null(), updated_at=bindparam("p_now")
            )
        )
        self.list_deliveries: AnySelect = (
            select(deliveries).where(_d.run_id == bindparam("p_run_id")).order_by(_d.seq)
        )
        self.list_deliveries_by_status = self.list_deliveries.where(
            _d.status.in_(bindparam("p_statuses", expanding=True))
        )
        self.open_deliveries = self.list_deliveries.where(
            _d.status.in_(_statuses(OPEN_DELIVERY_STATUSES))
        )
        self.due_pending = dialect.skip_locked(_due_pending(), of=deliveries)
        self.due_running = dialect.skip_locked(_due_running(), of=deliveries)
        self.delete_runs: Delete = delete(runs).where(
            _r.run_id.in_(bindparam("p_ids", expanding=True))
        )
        self.finished_before: AnySelect = (
            select(_r.run_id)
            .where(_r.status.in_(["completed", "failed", "cancelled"]))
            .where(_r.updated_at < bindparam("p_before"))
            .limit(bindparam("p_limit"))
        )
        self.expired_runs: AnySelect = (
            select(runs)
            .where(
                _r.status.in_(["running", "waiting"]),
                _r.deadline_at.is_not(None),
                _r.deadline_at < bindparam("p_now"),
            )
            .order_by(_r.deadline_at)
            .limit(bindparam("p_limit"))
        )
        self.mark_one_published: Update = (
            update(deliveries)
            .where(_d.delivery_id == bindparam("p_id"), _d.status == "pending")
            .values(published_at=bindparam("p_at"))
        )
        self.mark_published: Update = (
            update(deliveries)
            .where(_d.delivery_id.in_(bindparam("p_ids", expanding=True)))
            .values(published_at=bindparam("p_now"))
        )

    def _init_journal_and_stream(self, dialect: SqlDialect) -> None:
        self.insert_journal: Insert = journal.insert()
        self.select_journal: AnySelect = select(journal.c.result).where(
            journal.c.journal_id == bindparam("p_journal_id"),
            journal.c.edit_index == bindparam("p_index"),
        )
        self.insert_stream: Insert = stream.insert()
        self.select_stream: AnySelect = (
            select(stream)
            .where(stream.c.run_id == bindparam("p_run_id"), stream.c.seq > bindparam("p_after"))
            .order_by(stream.c.seq)
        )
        self.select_stream_limited = self.select_stream.limit(bindparam("p_limit"))
        self.select_stream_dedupe: AnySelect = select(stream.c.seq).where(
            stream.c.run_id == bindparam("p_run_id"),
            stream.c.dedupe_key == bindparam("p_key"),
        )

    def pipelined_claim(self) -> tuple[AnySelect, AnySelect, AnySelect, Update]:
        """The claim as the PostgreSQL pipeline sends it (see ``_pg.PgHotPath.claim``):
        lock the delivery row, optionally with the step's claim lock; read what the
        caller needs to say why a claim failed; the claim rule in one ``UPDATE``."""
        d, r = deliveries.alias("d"), runs.alias("r")
        by_id = d.c.delivery_id == bindparam("p_id")
        lock: AnySelect = (
            select(literal_column("1")).select_from(d).where(by_id).with_for_update(of=d)
        )
        key = _const(CLAIM_LOCK_PREFIX) + d.c.run_id + _const(":") + d.c.step
        lock_step = (
            select(func.pg_advisory_xact_lock(func.hashtextextended(key, literal_column("0"))))
            .where(by_id)
            .with_for_update(of=d)
        )
        count = live_running(d.c.run_id, d.c.step, d.c.delivery_id).scalar_subquery()
        facts = (
            select(
                *d.c,
                r.c.status.label("run_status"),
                r.c.workflow_name.label("run_workflow"),
                count.label("live_running"),
            )
            .join_from(d, r, r.c.run_id == d.c.run_id)
            .where(by_id)
        )
        now: BindParameter[datetime] = bindparam("p_now")
        workflow = bindparam("p_workflow", type_=String)
        most = bindparam("p_max", type_=Integer)
        due = or_(
            and_(
                d.c.status == _const("pending"),
                or_(d.c.not_before.is_(None), d.c.not_before <= now),
            ),
            and_(
                d.c.status == _const("running"),
                or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < now),
            ),
        )
        claim = (
            update(d)  # type: ignore[arg-type]
            .where(
                by_id,
                r.c.run_id == d.c.run_id,
                r.c.status.not_in(_statuses(TERMINAL_RUN_STATUSES)),
                or_(workflow.is_(None), r.c.workflow_name == workflow),
                due,
                or_(most.is_(None), count < most),
            )
            .values(
                status=_const("running"),
                attempt=d.c.attempt + literal_column("1", Integer),
                lease_expires_at=bindparam("p_lease"),
                updated_at=now,
            )
            .returning(*d.c)
        )
        return lock, lock_step, facts, claim

    def update_run(self, columns: Sequence[str]) -> Update:
        """Set ``columns`` (from parameters ``p_<column>``) on the run ``p_run_id``.

        The set of columns varies per transaction; one statement per set is kept, so
        SQLAlchemy's compiled cache serves it.
        """
        key = tuple(columns)
        stmt = self._run_updates.get(key)
        if stmt is None:
            values = {c: bindparam(f"p_{c}", type_=runs.c[c].type) for c in key}
            stmt = update(runs).where(_r.run_id == bindparam("p_run_id")).values(values)
            self._run_updates[key] = stmt
        return stmt


def _due(*conditions: Any) -> AnySelect:
    return (
        select(deliveries, _r.workflow_name)
        .join(runs, _r.run_id == _d.run_id)
        .where(*conditions)
        .order_by(_d.published_at)
        .limit(bindparam("p_limit"))
    )


def _due_pending() -> AnySelect:
    # Range scan of ix_cw_deliveries_status_published_at: only what is stale is read.
    return _due(
        _d.status == "pending",
        # NULL: written by a version that did not stamp it (a rolling upgrade)
        or_(_d.published_at.is_(None), _d.published_at < bindparam("p_stale_before")),
        tuple_(_r.workflow_name, _d.step).in_(bindparam("p_idle", expanding=True)),
    )


def _due_running() -> AnySelect:
    stale: BindParameter[datetime] = bindparam("p_stale_before")
    expired = _d.lease_expires_at
    return _due(
        _d.status == "running",
        expired < bindparam("p_now"),
        # once after its lease expired; again only like a pending one (its queue empty)
        or_(
            _d.published_at.is_(None),
            _d.published_at < expired,
            and_(
                _d.published_at < stale,
                tuple_(_r.workflow_name, _d.step).in_(bindparam("p_idle", expanding=True)),
            ),
        ),
        tuple_(_r.workflow_name, _d.step).in_(bindparam("p_served", expanding=True)),
    )


def list_runs(query: RunQuery) -> tuple[AnySelect, dict[str, Any]]:
    """The page of runs ``query`` asks for, newest first (index ``(created_at, run_id)``)."""
    stmt = select(runs)
    params: dict[str, Any] = {"p_limit": query.limit}
    if query.statuses is not None:
        stmt = stmt.where(_r.status.in_(bindparam("p_statuses", expanding=True)))
        params["p_statuses"] = list(query.statuses)
    if query.workflow_name is not None:
        stmt = stmt.where(_r.workflow_name == bindparam("p_workflow"))
        params["p_workflow"] = query.workflow_name
    if query.created_after is not None:
        stmt = stmt.where(_r.created_at >= bindparam("p_after", type_=_r.created_at.type))
        params["p_after"] = query.created_after
    if query.created_before is not None:
        stmt = stmt.where(_r.created_at < bindparam("p_before", type_=_r.created_at.type))
        params["p_before"] = query.created_before
    if query.cursor is not None:
        at = bindparam("p_cursor_at", type_=_r.created_at.type)
        stmt = stmt.where(tuple_(_r.created_at, _r.run_id) < tuple_(at, bindparam("p_cursor_id")))
        params["p_cursor_at"], params["p_cursor_id"] = query.cursor
    order = stmt.order_by(_r.created_at.desc(), _r.run_id.desc()).limit(bindparam("p_limit"))
    return order, params


def streams_after(
    cursors: Sequence[tuple[str, int]], limit: int
) -> tuple[AnySelect, dict[str, Any]]:
    """Stream entries after a seq for each of several runs, ``limit`` in all (one OR'd
    term per run: callers keep ``cursors`` short, SQLite caps expression depth)."""
    params: dict[str, Any] = {"p_limit": limit}
    terms = []
    for i, (run_id, seq) in enumerate(cursors):
        terms.append(
            and_(stream.c.run_id == bindparam(f"p_run_{i}"), stream.c.seq > bindparam(f"p_seq_{i}"))
        )
        params[f"p_run_{i}"], params[f"p_seq_{i}"] = run_id, seq
    stmt = (
        select(stream)
        .where(or_(*terms))
        .order_by(stream.c.run_id, stream.c.seq)
        .limit(bindparam("p_limit"))
    )
    return stmt, params


def run_from_row(row: Row[Any]) -> RunRecord:
    """A RunRecord from a ``cw_runs`` row."""
    return RunRecord(
        run_id=row.run_id,
        workflow_name=row.workflow_name,
        status=row.status,
        state=row.state,
        meta=row.meta if row.meta is not None else {},
        result=row.result,
        error=row.error,
        code_version=row.code_version,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deadline_at=row.deadline_at,
        start_fingerprint=row.start_fingerprint,
    )


def delivery_from_row(row: Row[Any]) -> DeliveryRecord:
    """A DeliveryRecord from a ``cw_deliveries`` row."""
    return DeliveryRecord(
        delivery_id=row.delivery_id,
        run_id=row.run_id,
        step=row.step,
        event=row.event,
        status=row.status,
        attempt=row.attempt,
        journal_id=row.journal_id,
        parent_id=row.parent_id,
        extra=row.extra if row.extra is not None else {},
        error=row.error,
        not_before=row.not_before,
        lease_expires_at=row.lease_expires_at,
        published_at=row.published_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def stream_from_row(row: Row[Any]) -> StreamEntry:
    """A StreamEntry from a ``cw_stream`` row."""
    return StreamEntry(run_id=row.run_id, seq=row.seq, event=row.event, created_at=row.created_at)
