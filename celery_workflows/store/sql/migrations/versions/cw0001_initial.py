"""Create the run store tables: cw_runs, cw_deliveries, cw_journal, cw_stream.

Revision ID: cw0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "cw0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the types of schema.py as of this revision (DDL only).
ID = sa.String(255)
STATUS = sa.String(16)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json(*, binary_on_postgres: bool = False) -> sa.types.TypeEngine[Any]:
    base = sa.JSON(none_as_null=True)
    if binary_on_postgres:
        return base.with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    return base


def upgrade() -> None:
    """Create the four tables and their indexes."""
    _create_runs()
    _create_deliveries()
    op.create_table(
        "cw_journal",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("journal_id", ID, nullable=False),
        sa.Column("edit_index", sa.Integer(), nullable=False),
        sa.Column("result", _json()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["cw_runs.run_id"], name="fk_cw_journal_run_id_cw_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("journal_id", "edit_index", name="pk_cw_journal"),
    )
    op.create_table(
        "cw_stream",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", _json()),
        sa.Column("dedupe_key", ID),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["cw_runs.run_id"], name="fk_cw_stream_run_id_cw_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_cw_stream"),
        sa.UniqueConstraint("run_id", "dedupe_key", name="uq_cw_stream_run_id_dedupe_key"),
    )


def _create_runs() -> None:
    op.create_table(
        "cw_runs",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("workflow_name", ID, nullable=False),
        sa.Column("code_version", ID, nullable=False, server_default=""),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("state", _json(binary_on_postgres=True)),
        sa.Column("meta", _json()),
        sa.Column("result", _json()),
        sa.Column("error", _json()),
        sa.Column("idempotency_key", ID),
        sa.Column("stream_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delivery_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("deadline_at", _ts()),
        sa.PrimaryKeyConstraint("run_id", name="pk_cw_runs"),
        sa.UniqueConstraint("idempotency_key", name="uq_cw_runs_idempotency_key"),
    )
    op.create_index("ix_cw_runs_status", "cw_runs", ["status"])


def _create_deliveries() -> None:
    op.create_table(
        "cw_deliveries",
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", ID, nullable=False),
        sa.Column("event", _json()),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("journal_id", ID, nullable=False),
        sa.Column("parent_id", ID),
        sa.Column("extra", _json()),
        sa.Column("error", _json()),
        sa.Column("not_before", _ts()),
        sa.Column("lease_expires_at", _ts()),
        sa.Column("published_at", _ts()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["cw_runs.run_id"],
            name="fk_cw_deliveries_run_id_cw_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_cw_deliveries"),
    )
    op.create_index("ix_cw_deliveries_status_not_before", "cw_deliveries", ["status", "not_before"])
    op.create_index("ix_cw_deliveries_run_id_status", "cw_deliveries", ["run_id", "status"])


def downgrade() -> None:
    """Drop the four tables (children first)."""
    for table in ("cw_stream", "cw_journal", "cw_deliveries", "cw_runs"):
        op.drop_table(table)
