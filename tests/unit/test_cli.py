"""The ``celery-workflows`` console script, through its installed entry point (SQLite)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


SERVED_MODULE = """
from celery_workflows import Workflow, step
from celery_workflows.events import StartEvent, StopEvent


class Hello(Workflow):
    @step
    async def hello(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"hello {ev.get('name', 'world')}")


hello = Hello()
not_a_server = 42
"""


def serve_until_listening(tmp_path: Path, target: str, env: dict[str, str]) -> tuple[Any, int]:
    """``celery-workflows serve TARGET --port 0`` started; its process and its port."""
    if SCRIPT is None:
        pytest.fail("the celery-workflows console script is not installed (scripts/install)")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SCRIPT, "serve", target, "--port", "0"], cwd=tmp_path, env=env,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return proc, int(found.group(1))
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"serve did not start listening:\n{log.read_text()}")


def test_serve_runs_a_workflow_of_a_module_for_the_llama_agents_client(tmp_path: Path) -> None:
    import asyncio

    import httpx
    from llama_agents.client import WorkflowClient

    (tmp_path / "served_app.py").write_text(SERVED_MODULE)
    env = {**os.environ, "CELERY_WORKFLOWS_API_TOKEN": "t0ken"}
    proc, port = serve_until_listening(tmp_path, "served_app:hello", env)
    try:

        async def use() -> None:
            headers = {"Authorization": "Bearer t0ken"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                assert (
                    await http.get("/workflows", headers={"Authorization": ""})
                ).status_code == 401
                client = WorkflowClient(httpx_client=http)
                assert (await client.list_workflows()).workflows == ["hello"]
                done = await client.run_workflow("hello", start_event={"name": "cli"})
                assert done.result is not None and done.result.value["result"] == "hello cli"

        asyncio.run(use())
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_serve_refuses_a_target_that_is_not_a_server_or_workflow(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(SERVED_MODULE)
    if SCRIPT is None:
        pytest.fail("the celery-workflows console script is not installed (scripts/install)")
    run = [SCRIPT, "serve"]
    wrong = subprocess.run(
        [*run, "served_app:not_a_server"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 1 and "is a int" in wrong.stderr
    missing = subprocess.run(
        [*run, "no_such_module:app"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "cannot import 'no_such_module'" in missing.stderr
