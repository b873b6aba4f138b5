"""The README's example command runs and prints the expected result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_quickstart_module_runs_end_to_end_on_a_sqlite_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery_workflows.examples.quickstart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert (tmp_path / "celery_workflows_quickstart.db").exists()
    assert "state: 9" in done.stdout
    assert done.stdout.count("progress: counted") == 3
    assert "result: {'chunks': 3, 'words': 9}" in done.stdout
