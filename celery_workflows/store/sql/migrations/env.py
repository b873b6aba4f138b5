"""Alembic environment of the run store schema, driven from code (no alembic.ini).

The URL comes from ``config.attributes["database_url"]`` (set by
:mod:`celery_workflows.store.sql.migrate`), never from an ini file. All revisions run in
one transaction that first takes a migration lock, so several processes that start at
once and all call ``upgrade()`` apply each revision exactly once.
"""

from __future__ import annotations

from alembic import context

from celery_workflows.store.sql.migrate import (
    VERSION_TABLE,
    migration_engine,
    take_migration_lock,
)
from celery_workflows.store.sql.schema import metadata


def run_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=context.config.attributes["database_url"],
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate the database through one connection and one transaction."""
    engine = migration_engine(context.config.attributes["database_url"])
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table=VERSION_TABLE,
                transactional_ddl=True,
            )
            with context.begin_transaction():
                take_migration_lock(connection)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
