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
    assert upgraded.stdout.strip().endswith("is at cw0003")
    assert cli("db", "current", "--database-url", url).stdout.strip() == "cw0003"


def test_the_database_url_comes_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "CELERY_WORKFLOWS_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    assert cli("db", "current", env=env).stdout.strip() == "base"
    assert cli("db", "upgrade", "cw0001", env=env).returncode == 0
    assert cli("db", "current", env=env).stdout.strip() == "cw0001"


def test_an_unreachable_database_is_reported_without_its_password() -> None:
    failed = cli("db", "current", "--database-url", "postgresql+psycopg://cw:s3cret@127.0.0.1:1/x")
    assert failed.returncode == 1
    assert "cw:***@127.0.0.1:1/x" in failed.stderr and "s3cret" not in failed.stderr
