"""Add cw_runs.start_fingerprint: a run id started again must be the same start.

Revision ID: cw0003
Revises: cw0002
Create Date: 2026-12-01

Existing runs keep NULL (unknown start): they are compared by workflow name only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "cw0003"
down_revision: str | None = "cw0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable column (no rewrite of existing rows)."""
    op.add_column("cw_runs", sa.Column("start_fingerprint", sa.String(64)))


def downgrade() -> None:
    """Drop the column.

    A plain ALTER TABLE (SQLite 3.35+ has DROP COLUMN): a batch rebuild would drop and
    re-create cw_runs, and with foreign keys on, dropping it deletes every child row.
    """
    op.drop_column("cw_runs", "start_fingerprint")
