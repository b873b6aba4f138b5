"""The sweeper reads pending deliveries by publication time.

Every delivery now has ``published_at`` from its insert (it is published right after its
commit); open rows written before this revision get the time they were last touched.
The index on ``(status, not_before)`` served the old sweep and is replaced.

Revision ID: cw0002
Revises: cw0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "cw0002"
down_revision: str | None = "cw0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Backfill ``published_at`` of open deliveries; swap the sweeper's index."""
    d = sa.table(
        "cw_deliveries",
        sa.column("status", sa.String),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("not_before", sa.DateTime(timezone=True)),
    )
    touched = sa.case((d.c.not_before > d.c.updated_at, d.c.not_before), else_=d.c.updated_at)
    op.execute(
        d.update()
        .where(d.c.published_at.is_(None), d.c.status.in_(["pending", "running"]))
        .values(published_at=touched)
    )
    op.drop_index("ix_cw_deliveries_status_not_before", table_name="cw_deliveries")
    op.create_index(
        "ix_cw_deliveries_status_published_at", "cw_deliveries", ["status", "published_at"]
    )


def downgrade() -> None:
    """Put the old index back (``published_at`` values stay)."""
    op.drop_index("ix_cw_deliveries_status_published_at", table_name="cw_deliveries")
    op.create_index("ix_cw_deliveries_status_not_before", "cw_deliveries", ["status", "not_before"])
