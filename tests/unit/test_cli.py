"""The ``celery-workflows`` console script, through its installed entry point (SQLite)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("celery-workflows", path=str(Path(sys.executable).parent))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if SCRIPT is None:
        pytest.fail("the celery-workflows console script is not installed (scripts/install)")
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_db_upgrade_then_current_report_the_newest_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgraded = cli("db", "upgrade", "--database-url", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith("is at cw0004")
    assert cli("db", "current", "--database-url", url).stdout.strip() == "cw0004"


def test_the_database_url_comes_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "CELERY_WORKFLOWS_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    assert cli("db", "current", env=env).stdout.strip() == "base"
    assert cli("db", "upgrade", "cw0001", env=env).returncode == 0
    assert cli("db", "current", env=env).stdout.strip() == "cw0001"


def test_an_unreachable_database_is_reported_without_its_password() -> None:
    failed = cli("db", "current", "--database-url", "postgresql+psycopg://cw:s3cret@127.0.0.1:1/x")
    assert failed.returncode == 1
    assert "cw:***@127.0.0.1:1/x" in failed.stderr and "s3cret" not in failed.stderr


def make_runs(url: str) -> None:
    """Three runs on a SQLite store: one finished long ago, one failed now, one waiting."""
    import asyncio
    from datetime import timedelta

    from celery_workflows.store.base import NewRun, utcnow
    from celery_workflows.store.sql import SqlRunStore

    async def fill() -> None:
        long_ago = utcnow() - timedelta(days=30)
        old = SqlRunStore(url, create_schema=True, clock=lambda: long_ago)
        await old.create_run(NewRun("old", "wf.Report", {}, {}), [])
        async with old.locked("old") as txn:
            txn.set_status("completed", result={"r": 1})
        await old.close()
        store = SqlRunStore(url)
        await store.create_run(NewRun("failed", "wf.Report", {}, {}), [])
        async with store.locked("failed") as txn:
            txn.set_status("failed", error={"kind": "step", "message": "boom"})
        await store.create_run(NewRun("waiting", "wf.Ask", {"n": 1}, {}), [])
        await store.close()

    asyncio.run(fill())


def test_runs_list_show_cancel_and_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    make_runs(url)
    env = {**os.environ, "CELERY_WORKFLOWS_DATABASE_URL": url}
    listed = cli("runs", "list", env=env).stdout.splitlines()
    assert [line.split()[:2] for line in listed] == [
        ["waiting", "running"],
        ["failed", "failed"],
        ["old", "completed"],
    ]
    only = cli("runs", "list", "--workflow", "wf.Report", "--status", "failed", env=env)
    assert [line.split()[0] for line in only.stdout.splitlines()] == ["failed"]

    shown = cli("runs", "show", "waiting", env=env)
    assert shown.returncode == 0, shown.stderr
    assert '"status": "running"' in shown.stdout and '"n": 1' in shown.stdout
    missing = cli("runs", "show", "nope", env=env)
    assert missing.returncode == 1 and "run 'nope' does not exist" in missing.stderr

    assert cli("runs", "cancel", "waiting", env=env).stdout.strip() == "waiting cancelled"
    assert "had already ended" in cli("runs", "cancel", "waiting", env=env).stdout
    assert "WorkflowCancelledEvent" in cli("runs", "show", "waiting", env=env).stdout

    purged = cli("runs", "purge", "--older-than", "7d", env=env)
    assert purged.stdout.strip() == "deleted 1 finished runs"  # only the 30-day-old one
    assert [line.split()[0] for line in cli("runs", "list", env=env).stdout.splitlines()] == [
        "waiting",
        "failed",
    ]
    bad = cli("runs", "purge", "--older-than", "soon", env=env)
    assert bad.returncode == 2 and "7d" in bad.stderr


def test_runs_events_prints_the_stream_and_follows_until_the_run_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    make_runs(url)
    env = {**os.environ, "CELERY_WORKFLOWS_DATABASE_URL": url}
    assert cli("runs", "events", "waiting", env=env).stdout == ""  # nothing streamed yet
    assert SCRIPT is not None
    follow = subprocess.Popen(
        [SCRIPT, "runs", "events", "waiting", "--follow", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # The tail is running (it has not ended by itself); ending the run ends it.
        with pytest.raises(subprocess.TimeoutExpired):
            follow.wait(timeout=1.5)
        assert cli("runs", "cancel", "waiting", env=env).returncode == 0
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=10)
    assert follow.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].split()[:2] == ["1", "WorkflowCancelledEvent"]
    assert cli("runs", "events", "waiting", "--after", "1", env=env).stdout == ""
