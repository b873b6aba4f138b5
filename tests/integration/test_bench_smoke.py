"""``bench/run.py --quick`` end to end: real workers, every figure in the JSON with numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: Summaries (median/min/max) each figure must hold, as key paths.
EXPECTED = {
    "latency": ["ours_p50_ms", "ours_p95_ms", "plain_p50_ms", "plain_p95_ms", "ratio_per_hop"],
    "api_latency": ["sync_ms", "async_ms", "polled_ms", "chain_get_ms", "sync_ratio_per_repeat"],
    "throughput": [
        "workers_1.ours_steps_per_s",
        "workers_1.plain_tasks_per_s",
        "workers_2.ours_steps_per_s",
        "workers_2.plain_tasks_per_s",
    ],
    "fanout": ["ours_ms_per_event", "chord_ms_per_event", "ratio"],
    "inprocess": ["ours_runs_per_s", "upstream_runs_per_s", "ratio"],
    "cost": ["db_bytes_per_run", "statements_per_hop", "transactions_per_hop"],
}
RSS_KEYS = ("main_mib", "child_mib", "total_mib")


def _at(figure: dict[str, Any], path: str) -> Any:
    value: Any = figure
    for key in path.split("."):
        value = value[key]
    return value


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _check_summary(where: str, stat: dict[str, Any]) -> None:
    numbers = [stat["min"], stat["median"], stat["max"]]
    assert all(_positive(v) for v in numbers), f"{where}: {stat}"
    assert stat["min"] <= stat["median"] <= stat["max"], f"{where}: {stat}"


@pytest.mark.timeout(300)
def test_bench_quick_run_reports_every_figure_with_numbers(
    tmp_path: Path, redis_url: str, create_postgres_database: Callable[[], str]
) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    [results_file] = tmp_path.glob("*.json")
    figures = json.loads(results_file.read_text())["figures"]

    for name, paths in EXPECTED.items():
        for path in paths:
            _check_summary(f"{name}.{path}", _at(figures[name], path))
    assert _positive(figures["throughput"]["workers_1"]["ratio"])
    for contender in ("ours_worker_rss", "plain_worker_rss"):
        rss = figures["cost"][contender]
        assert all(_positive(rss[k]) for k in RSS_KEYS), f"{contender}: {rss}"
    peer = figures["dbos_peer"]
    assert peer["status"] in {"ok", "not available", "failed"}, peer
    if peer["status"] == "ok":
        assert all(_positive(v) for v in peer["metrics"].values()), peer

    table = (tmp_path / "latest.md").read_text()
    assert "| figure | celery_workflows | reference | ratio |" in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").stat().st_size > 10_000
