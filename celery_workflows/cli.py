"""``celery-workflows``: the operator's command line.

    celery-workflows db upgrade [REVISION]     migrate the run store (default: newest)
    celery-workflows db current                print the revision it is at
    celery-workflows runs list [--status S] [--workflow W] [--limit N]
    celery-workflows runs show RUN_ID          the run row and its stream, as JSON
    celery-workflows runs events RUN_ID [--follow]
    celery-workflows runs cancel RUN_ID
    celery-workflows runs purge --older-than 7d
    celery-workflows serve MODULE:ATTR [--host H] [--port P]

The database URL comes from ``--database-url`` or ``CELERY_WORKFLOWS_DATABASE_URL`` (so
it need not appear in a process listing) and is never echoed with its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from ._serializers import JsonSerializer
from .context.state_store import DictState
from .errors import RunNotFoundError, StoreError
from .runtime.codec import JsonCodec
from .runtime.interventions import halt
from .store.base import RunQuery, RunRecord, utcnow
from .store.sql import SqlRunStore
from .store.sql._db import masked_url
from .store.sql.migrate import DATABASE_URL_ENV, current, upgrade

T = TypeVar("T")

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
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{masked_url(database_url)} is at {at}")


@db.command("current")
@_database_url
def db_current(database_url: str) -> None:
    """Print the revision the run store is at (``base``: empty)."""
    try:
        click.echo(current(database_url) or "base")
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def runs() -> None:
    """Runs in the run store (read from any process; no worker needed)."""


def _with_store(database_url: str, use: Callable[[SqlRunStore], Awaitable[T]]) -> T:
    """Run ``use(store)``; store errors become a one-line message (URL masked)."""

    async def go() -> T:
        store = SqlRunStore(database_url)
        try:
            return await use(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (RunNotFoundError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc


def _summary(run: RunRecord) -> str:
    when = run.created_at.isoformat(timespec="seconds")
    return f"{run.run_id}  {run.status:<9}  {when}  {run.workflow_name}"


@runs.command("list")
@_database_url
@click.option("--status", "statuses", multiple=True, help="Only runs in this status.")
@click.option("--workflow", help="Only runs of this workflow name.")
@click.option("--limit", default=50, show_default=True, help="Runs to show, newest first.")
def runs_list(
    database_url: str, statuses: tuple[Any, ...], workflow: str | None, limit: int
) -> None:
    """List runs, newest first: id, status, created, workflow."""
    query = RunQuery(statuses=statuses or None, workflow_name=workflow, limit=limit)
    for run in _with_store(database_url, lambda store: store.list_runs(query)):
        click.echo(_summary(run))


@runs.command("show")
@_database_url
@click.argument("run_id")
def runs_show(database_url: str, run_id: str) -> None:
    """The run row and its stream, as JSON (payloads as stored: nothing is decoded)."""

    async def read(store: SqlRunStore) -> dict[str, Any]:
        run = await store.get_run(run_id)
        stream = await store.read_stream(run_id)
        deliveries = await store.list_deliveries(run_id)
        return {
            "run_id": run.run_id,
            "workflow": run.workflow_name,
            "code_version": run.code_version,
            "status": run.status,
            "created_at": run.created_at.isoformat(),
            "updated_at": run.updated_at.isoformat(),
            "error": run.error,
            "result": run.result,
            "state": run.state,
            "steps": [
                {"step": d.step, "status": d.status, "attempt": d.attempt} for d in deliveries
            ],
            "stream": [entry.event for entry in stream],
        }

    click.echo(json.dumps(_with_store(database_url, read), indent=2, default=str))


def _event_line(seq: int, payload: Any) -> str:
    """One stream entry as a line: ``seq  Type  {fields}`` (the stored JSON, not decoded)."""
    name = "?"
    value = payload
    if isinstance(payload, dict) and "qualified_name" in payload:
        name = str(payload["qualified_name"]).rsplit(".", 1)[-1]
        value = payload.get("value", {})
    return f"{seq:>5}  {name}  {json.dumps(value, default=str, sort_keys=True)}"


@runs.command("events")
@_database_url
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--after", default=0, show_default=True, help="Start after this sequence.")
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    help="With --follow, the longest wait between reads (a change wakes it at once).",
)
def runs_events(database_url: str, run_id: str, follow: bool, after: int, interval: float) -> None:
    """The run's event stream, one line per event; with --follow a live tail, woken by
    each commit of the run (PostgreSQL LISTEN/NOTIFY; SQLite reads every ``interval``)."""

    async def tail(store: SqlRunStore) -> None:
        seq = after
        with store.watch().subscribe(run_id) as watch:
            while True:
                watch.clear()  # before reading: a commit after this wakes the wait below
                run = await store.get_run(run_id)  # first: a finished run's entries are all in
                for entry in await store.read_stream(run_id, seq):
                    seq = entry.seq
                    click.echo(_event_line(entry.seq, entry.event))
                if not follow or run.finished:
                    return
                await watch.wait(interval)

    _with_store(database_url, tail)


@runs.command("cancel")
@_database_url
@click.argument("run_id")
def runs_cancel(database_url: str, run_id: str) -> None:
    """Cancel a run: it streams WorkflowCancelledEvent and ends as cancelled."""
    codec = JsonCodec(JsonSerializer(), DictState)

    async def cancel(store: SqlRunStore) -> bool:
        return await halt(store, codec, run_id, "cancelled")

    ended = _with_store(database_url, cancel)
    click.echo(f"{run_id} cancelled" if ended else f"{run_id} had already ended")


_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _age(text: str) -> timedelta:
    found = _AGE.match(text.strip())
    if found is None:
        raise click.BadParameter(f"{text!r}: give a number and s, m, h or d (e.g. 7d)")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


@runs.command("purge")
@_database_url
@click.option("--older-than", "older_than", required=True, help="Age, e.g. 7d, 12h, 30m.")
def runs_purge(database_url: str, older_than: str) -> None:
    """Delete finished runs last updated longer ago than --older-than (with their
    deliveries, journal and stream). Running and waiting runs are kept."""
    cutoff = utcnow() - _age(older_than)

    async def purge(store: SqlRunStore) -> int:
        total = 0
        while deleted := await store.delete_runs(finished_before=cutoff, limit=1000):
            total += deleted
        return total

    click.echo(f"deleted {_with_store(database_url, purge)} finished runs")


def _load_target(target: str) -> Any:
    """``MODULE:ATTR`` imported from the working directory (as uvicorn and celery -A do)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{target!r}: give MODULE:ATTR, e.g. proj.web:server")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.ClickException(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise click.ClickException(f"module {module_name!r} has no attribute {attr!r}") from exc


@main.command("serve")
@click.argument("target")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, help="Port to bind (0: any free).")
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
def serve(target: str, host: str, port: int, log_level: str) -> None:
    """Serve workflows over HTTP in the protocol of llama-agents-server.

    TARGET is MODULE:ATTR, where ATTR is a WorkflowServer, a workflow (served under the
    name ATTR) or a dict of name -> workflow. The bearer token comes from
    CELERY_WORKFLOWS_API_TOKEN (or the server's api_token).
    """
    try:
        from .server import WorkflowServer
    except ImportError as exc:
        raise click.ClickException(
            f"the server needs the 'server' extra (pip install 'celery_workflows[server]'): {exc}"
        ) from exc
    from .workflow import Workflow

    found = _load_target(target)
    if isinstance(found, WorkflowServer):
        server = found
    elif isinstance(found, Workflow | dict):
        workflows = found if isinstance(found, dict) else {target.partition(":")[2]: found}
        server = WorkflowServer()
        for name, workflow in workflows.items():
            if not isinstance(workflow, Workflow):
                raise click.ClickException(f"{target}[{name!r}] is not a workflow")
            server.add_workflow(str(name), workflow)
    else:
        raise click.ClickException(
            f"{target} is a {type(found).__name__}: give a WorkflowServer, a workflow or a "
            "dict of workflows"
        )
    # uvicorn shuts down gracefully on Ctrl-C, then raises it again: a clean exit here.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(host, port, {"log_level": log_level}))
