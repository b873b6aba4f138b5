"""``celery-workflows``: the operator's command line.

    celery-workflows db upgrade [REVISION]     migrate the run store (default: newest)
    celery-workflows db current                print the revision it is at

The database URL comes from ``--database-url`` or ``CELERY_WORKFLOWS_DATABASE_URL`` (so
it need not appear in a process listing) and is never echoed with its password.
"""

from __future__ import annotations

import click

from .errors import StoreUnavailableError
from .store.sql._db import masked_url
from .store.sql.migrate import DATABASE_URL_ENV, current, upgrade

__all__ = ["main"]

_database_url = click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    required=True,
    help="SQLAlchemy URL of the run store.",
)


@click.group()
def main() -> None:
    """Operate celery_workflows."""


@main.group()
def db() -> None:
    """The run store's schema."""


@db.command("upgrade")
@_database_url
@click.argument("revision", default="head")
def db_upgrade(database_url: str, revision: str) -> None:
    """Migrate the run store to REVISION (default: the newest)."""
    try:
        upgrade(database_url, revision)
        at = current(database_url) or "base"
    except StoreUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{masked_url(database_url)} is at {at}")


@db.command("current")
@_database_url
def db_current(database_url: str) -> None:
    """Print the revision the run store is at (``base``: empty)."""
    try:
        click.echo(current(database_url) or "base")
    except StoreUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
