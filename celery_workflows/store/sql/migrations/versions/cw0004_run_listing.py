"""Indexes for listing runs newest first (all, or one workflow's).

Revision ID: cw0004
Revises: cw0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision: str = "cw0004"
down_revision: str | None = "cw0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Two indexes on cw_runs."""
    op.create_index("ix_cw_runs_created_at_run_id", "cw_runs", ["created_at", "run_id"])
    op.create_index(
        "ix_cw_runs_workflow_name_created_at", "cw_runs", ["workflow_name", "created_at"]
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_cw_runs_workflow_name_created_at", table_name="cw_runs")
    op.drop_index("ix_cw_runs_created_at_run_id", table_name="cw_runs")
