"""The SQL run store: PostgreSQL and SQLite through SQLAlchemy Core, schema under Alembic.

This is the only package of celery_workflows that imports SQLAlchemy, Alembic or a
database driver.
"""

from __future__ import annotations

from celery_workflows.store.sql.migrate import current, downgrade, upgrade
from celery_workflows.store.sql.store import SqlRunStore

__all__ = ["SqlRunStore", "current", "downgrade", "upgrade"]
