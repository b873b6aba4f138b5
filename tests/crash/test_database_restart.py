"""PostgreSQL restarted while runs are in flight: they finish once it is back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from workers import WorkerGroup

pytestmark = pytest.mark.crash


def restart_postgres() -> None:
    """Restart the local cluster listening on 5432 (as ``scripts/services`` runs it)."""
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.fail("no local PostgreSQL cluster to restart")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        timeout=60,
    )


def test_runs_finish_after_postgres_restarts_mid_run(workers: WorkerGroup) -> None:
    import cw_proj as p

    workers.env["CW_TEST_STEP_SLEEP"] = "2"
    try:
        workers.start("w1")
    finally:
        del workers.env["CW_TEST_STEP_SLEEP"]
    handlers: list[Any] = [p.slow.run() for _ in range(4)]
    time.sleep(1.5)  # the runs are inside their middle steps
    restart_postgres()
    for handler in handlers:
        assert handler.result(timeout=90) == "done", workers.log_tail()
        state = asyncio.run(handler.ctx.store.get_state())
        assert state.steps == 3
