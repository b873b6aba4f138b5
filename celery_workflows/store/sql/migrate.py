"""Schema migrations of the run store, run from code: ``upgrade(url)``, ``downgrade(url, rev)``.

The Alembic environment ships inside the package (``migrations/``) and the Config is
built here, so no ``alembic.ini`` is needed at runtime. The version table is
``cw_alembic_version``, apart from any Alembic history the application keeps in the same
database. From a shell::

    python -m celery_workflows.store.sql upgrade postgresql+psycopg://db.example/proj
    python -m celery_workflows.store.sql downgrade sqlite:///runs.db base
    CELERY_WORKFLOWS_DATABASE_URL=... python -m celery_workflows.store.sql upgrade

With no URL on the command line, the URL comes from ``CELERY_WORKFLOWS_DATABASE_URL``
(the variable the runtime reads), so a password need not appear in a process listing.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from celery_workflows.errors import StoreUnavailableError
from celery_workflows.store.sql._db import masked_url
from celery_workflows.store.sql.dialects import WRITE_OPTION, dialect_for, normalize_url

__all__ = ["DATABASE_URL_ENV", "VERSION_TABLE", "current", "downgrade", "main", "upgrade"]

#: The environment variable that holds the database URL when none is given.
DATABASE_URL_ENV = "CELERY_WORKFLOWS_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "cw_alembic_version"
# Arbitrary constant: the key of the PostgreSQL advisory lock held while migrating.
_PG_MIGRATION_LOCK = 0x63775F6D6967


def alembic_config(database_url: str | URL) -> Config:
    """An Alembic Config for the run store schema of ``database_url`` (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not a main option: ini interpolation would mangle "%".
    config.attributes["database_url"] = normalize_url(database_url)
    return config


def upgrade(database_url: str | URL, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest). Idempotent."""
    _run(database_url, lambda config: command.upgrade(config, revision))


def downgrade(database_url: str | URL, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table)."""
    _run(database_url, lambda config: command.downgrade(config, revision))


def current(database_url: str | URL) -> str | None:
    """The revision the database is at, or None for an empty database."""
    revision: list[str | None] = []
    _run(database_url, lambda config: revision.append(_current_revision(config)))
    return revision[0]


def _current_revision(config: Config) -> str | None:
    engine = migration_engine(config.attributes["database_url"])
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def migration_engine(url: URL) -> Engine:
    """An engine for migrating: one connection, SQLite writers begin IMMEDIATE."""
    dialect = dialect_for(url)
    engine = create_engine(url, **dialect.engine_options(busy_timeout_s=60))
    dialect.install(engine)
    return engine.execution_options(**{WRITE_OPTION: True})


def take_migration_lock(connection: Connection) -> None:
    """Serialize migrations of one database (inside the migration's transaction).

    SQLite needs nothing more: the transaction began IMMEDIATE, holding the write lock.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")


#: Alembic's ``context`` and ``op`` are module-level proxies: two migrations at once in
#: one process (two stores migrating on first use from two threads) would cross-wire.
_ALEMBIC = threading.Lock()


def _run(database_url: str | URL, action: Callable[[Config], None]) -> None:
    try:
        with _ALEMBIC:
            action(alembic_config(database_url))
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise StoreUnavailableError(
            f"bad run store database URL {masked_url(database_url)}: {exc}"
        ) from exc
    except sa_exc.DBAPIError as exc:
        raise _unavailable(database_url, exc) from exc


def _unavailable(database_url: str | URL, exc: sa_exc.DBAPIError) -> StoreUnavailableError:
    reason = " ".join(str(exc.orig).split())
    return StoreUnavailableError(
        f"cannot migrate run store database {masked_url(database_url)}: {reason}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``upgrade [URL] [REVISION]``, ``downgrade [URL] REVISION``,
    ``current [URL]``; without URL, ``CELERY_WORKFLOWS_DATABASE_URL`` is used."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "upgrade" and args.url and "://" not in args.url and args.revision == "head":
        # `upgrade REVISION`: a lone argument that is no URL is the revision.
        args.url, args.revision = None, args.url
    url = args.url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        print(
            f"error: no database URL: give one (`{args.command} URL ...`) or set "
            f"{DATABASE_URL_ENV}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.command == "upgrade":
            upgrade(url, args.revision)
        elif args.command == "downgrade":
            downgrade(url, args.revision)
        else:
            print(current(url) or "base")
    except StoreUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m celery_workflows.store.sql",
        description="Migrate the celery_workflows run store schema. Without URL, the URL "
        f"comes from the {DATABASE_URL_ENV} environment variable.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="migrate to a revision (default: head)")
    up.add_argument("url", nargs="?")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="migrate down to a revision ('base' = empty)")
    down.add_argument("url", nargs="?")
    down.add_argument("revision")
    cur = sub.add_parser("current", help="print the current revision")
    cur.add_argument("url", nargs="?")
    return parser
