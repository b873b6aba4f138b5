"""The run store's tables (SQLAlchemy Core). Migrations under ``migrations/`` create them.

Every ``*_at`` column holds UTC and comes back timezone-aware on every database. JSON
columns store SQL NULL for ``None`` (so ``IS NULL`` works); ``cw_runs.state`` is JSONB on
PostgreSQL so operators can query it, the other JSON columns keep their text as written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["deliveries", "journal", "metadata", "runs", "stream"]

# Stable constraint names make migrations reviewable and reversible on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ID = String(255)
STATUS = String(16)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; SQLite keeps naive text, so tz is attached on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the run store needs timezone-aware")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: one zone and one format keep that correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type(*, binary_on_postgres: bool = False) -> Any:
    """The JSON column type; ``None`` is stored as SQL NULL."""
    base = JSON(none_as_null=True)
    if binary_on_postgres:
        return base.with_variant(JSONB(none_as_null=True), "postgresql")
    return base


runs = Table(
    "cw_runs",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("workflow_name", ID, nullable=False),
    Column("code_version", ID, nullable=False, server_default=""),
    Column("status", STATUS, nullable=False),
    Column("state", json_type(binary_on_postgres=True)),
    Column("meta", json_type()),
    Column("result", json_type()),
    Column("error", json_type()),
    Column("idempotency_key", ID, unique=True),
    Column("stream_seq", Integer, nullable=False, server_default="0"),
    # Ordinal of the last delivery inserted: orders a run's deliveries even when many
    # share one created_at (they are all inserted under the run lock).
    Column("delivery_seq", Integer, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deadline_at", UtcDateTime),
    # Digest of the start (see NewRun): a run id started again must match it.
    Column("start_fingerprint", String(64)),
    Index(None, "status"),
    # list_runs: newest first, whole table or one workflow (keyset paging).
    Index(None, "created_at", "run_id"),
    Index(None, "workflow_name", "created_at"),
)

deliveries = Table(
    "cw_deliveries",
    metadata,
    Column("delivery_id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("cw_runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("step", ID, nullable=False),
    Column("event", json_type()),
    Column("status", STATUS, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("journal_id", ID, nullable=False),
    Column("parent_id", ID),
    Column("extra", json_type()),
    Column("error", json_type()),
    Column("not_before", UtcDateTime),
    Column("lease_expires_at", UtcDateTime),
    Column("published_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The sweeper's range scan: pending deliveries published before a cutoff.
    Index(None, "status", "published_at"),
    Index(None, "run_id", "status"),
)

journal = Table(
    "cw_journal",
    metadata,
    Column("run_id", ID, ForeignKey("cw_runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("journal_id", ID, nullable=False),
    Column("edit_index", Integer, nullable=False),
    Column("result", json_type()),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("journal_id", "edit_index"),
)

stream = Table(
    "cw_stream",
    metadata,
    Column("run_id", ID, ForeignKey("cw_runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event", json_type()),
    Column("dedupe_key", ID),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
    UniqueConstraint("run_id", "dedupe_key"),
)
