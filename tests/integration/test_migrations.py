"""The run store's Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from celery_workflows.store.sql import current, downgrade, upgrade
from celery_workflows.store.sql.migrate import VERSION_TABLE, main
from celery_workflows.store.sql.schema import metadata

pytestmark = pytest.mark.integration

TABLES = {"cw_runs", "cw_deliveries", "cw_journal", "cw_stream"}
HEAD = "cw0004"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    create: Callable[[], str] = request.getfixturevalue("create_postgres_database")
    return create()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_and_downgrade_to_base_removes_it(empty_url: str) -> None:
    assert current(empty_url) is None
    upgrade(empty_url)
    assert tables(empty_url) >= TABLES
    assert current(empty_url) == HEAD
    downgrade(empty_url, "base")
    assert tables(empty_url) & TABLES == set()
    assert current(empty_url) is None
    upgrade(empty_url)
    assert tables(empty_url) >= TABLES
    assert current(empty_url) == HEAD


def test_upgrade_twice_is_a_noop(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)
    assert current(empty_url) == HEAD


def test_migrated_schema_matches_the_tables_the_code_declares(empty_url: str) -> None:
    upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def upgrade_in_process(url: str, barrier: Any) -> None:
    """Entry point of one spawned process of the concurrent-upgrade test."""
    barrier.wait(timeout=60)
    upgrade(url)


@pytest.fixture
def spawn() -> Iterator[multiprocessing.context.SpawnContext]:
    """The spawn context (nothing inherited from the test process)."""
    yield multiprocessing.get_context("spawn")


def test_processes_upgrading_at_once_apply_each_revision_once(
    empty_url: str, spawn: multiprocessing.context.SpawnContext
) -> None:
    barrier = spawn.Barrier(3)
    procs = [spawn.Process(target=upgrade_in_process, args=(empty_url, barrier)) for _ in "abc"]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(timeout=90)
        assert [proc.exitcode for proc in procs] == [0, 0, 0]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
            proc.close()
    assert current(empty_url) == HEAD


def test_command_line_upgrades_reports_and_downgrades(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["upgrade", empty_url]) == 0
    assert main(["current", empty_url]) == 0
    assert capsys.readouterr().out.strip() == HEAD
    assert main(["downgrade", empty_url, "base"]) == 0
    assert current(empty_url) is None


def test_command_line_reports_an_unreachable_database_with_the_password_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["upgrade", "postgresql+psycopg://cw:s3cret@127.0.0.1:1/runs"]) == 1
    err = capsys.readouterr().err
    assert "cw:***@127.0.0.1:1/runs" in err and "s3cret" not in err


def test_cw0002_gives_open_deliveries_of_older_rows_a_publication_time(empty_url: str) -> None:
    upgrade(empty_url, "cw0001")
    engine = create_engine(empty_url)
    now, later = "2030-01-01 12:00:00+00:00", "2030-01-01 12:05:00+00:00"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cw_runs (run_id, workflow_name, code_version, status, "
                    "stream_seq, delivery_seq, created_at, updated_at) "
                    "VALUES ('r', 'wf', '', 'running', 0, 2, :now, :now)"
                ),
                {"now": now},
            )
            for delivery_id, not_before in (("soon", None), ("later", later)):
                conn.execute(
                    text(
                        "INSERT INTO cw_deliveries (delivery_id, run_id, seq, step, status, "
                        "attempt, journal_id, not_before, created_at, updated_at) VALUES "
                        "(:id, 'r', 1, 's', 'pending', 0, :id, :nb, :now, :now)"
                    ),
                    {"id": delivery_id, "nb": not_before, "now": now},
                )
        upgrade(empty_url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT delivery_id, published_at FROM cw_deliveries ORDER BY delivery_id")
            ).all()
    finally:
        engine.dispose()
    published = {row.delivery_id: str(row.published_at)[:19] for row in rows}
    assert published == {"later": "2030-01-01 12:05:00", "soon": "2030-01-01 12:00:00"}


async def test_cw0003_adds_the_start_fingerprint_and_keeps_existing_runs(empty_url: str) -> None:
    from celery_workflows.store.base import NewRun
    from celery_workflows.store.sql import SqlRunStore

    upgrade(empty_url, "cw0002")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cw_runs (run_id, workflow_name, status, created_at, updated_at)"
                    " VALUES ('old', 'wf', 'running', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(empty_url)
        store = SqlRunStore(empty_url)
        try:
            record, created = await store.create_run(
                NewRun("old", "wf", {}, {}, start_fingerprint="f1"), []
            )
            assert not created and record.start_fingerprint is None
        finally:
            await store.close()
        downgrade(empty_url, "cw0002")
        assert current(empty_url) == "cw0002"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT run_id FROM cw_runs")).scalar_one() == "old"
    finally:
        engine.dispose()
