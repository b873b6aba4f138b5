"""Benchmark peer: DBOS Transact (PyPI ``dbos``) running a 3-step durable workflow on PostgreSQL.

Each of the three ``@DBOS.step()`` functions adds 1 to a counter handed on by the previous
step, so every step writes one checkpoint to the DBOS system database -- the counterpart of
our one ``edit_state`` per step in ``bench_proj.Linear3``.

DBOS is a process-wide singleton (global instance, registry, logger, executor threads), so
:func:`measure` runs the benchmark in a child interpreter (this file as a script) and parses
the JSON it prints. Importing this module does not import ``dbos``.

Usage: ``.venv/bin/python bench/dbos_peer.py --runs 50 [--repeats 5] [--database-url URL]``.
Without ``--database-url`` a fresh database ``cw_bench_dbos_<random>`` is created on
127.0.0.1:5432 (user postgres) and dropped at the end. A given URL is used as is (DBOS
creates its ``dbos`` schema in it) and is not dropped.

Per repeat: ``runs`` sequential workflows, each timed from ``DBOS.start_workflow`` to
``handle.get_result()`` (latency), then ``runs`` workflows started at once with
``DBOS.start_workflow`` and timed until every result is in (throughput). Ten warm-up
workflows run once before the first repeat.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import percentile

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
WARMUP = 10
KEYS = (
    "latency_ms_median",
    "latency_ms_min",
    "latency_ms_max",
    "latency_ms_p95",
    "workflows_per_s_median",
    "workflows_per_s_min",
    "workflows_per_s_max",
)


def _timeout_s(runs: int, repeats: int) -> float:
    """Bound on one whole benchmark process (startup, migrations, warm-up and all repeats)."""
    return 120.0 + 0.5 * runs * repeats


def _create_database() -> tuple[str, str]:
    import psycopg

    name = f"cw_bench_dbos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=10) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=10) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _summarise(latencies_s: list[float], rates: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in latencies_s)
    return {
        "latency_ms_median": statistics.median(ms),
        "latency_ms_min": ms[0],
        "latency_ms_max": ms[-1],
        "latency_ms_p95": percentile(ms, 0.95),  # the same rule as ours
        "workflows_per_s_median": statistics.median(rates),
        "workflows_per_s_min": min(rates),
        "workflows_per_s_max": max(rates),
    }


def _run_dbos(database_url: str, runs: int, repeats: int) -> dict[str, float]:
    """Launch DBOS on ``database_url``, benchmark, shut DBOS down. Call once per process."""
    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    def step_one(n: int) -> int:
        return n + 1

    @DBOS.step()
    def step_two(n: int) -> int:
        return n + 1

    @DBOS.step()
    def step_three(n: int) -> int:
        return n + 1

    @DBOS.workflow()
    def linear3() -> int:
        return step_three(step_two(step_one(0)))

    config: DBOSConfig = {
        "name": "cw-bench-dbos",
        "system_database_url": database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    try:
        DBOS.launch()

        def once(fn: Callable[[], int]) -> int:
            return DBOS.start_workflow(fn).get_result()

        for _ in range(WARMUP):
            assert once(linear3) == 3

        latencies: list[float] = []
        rates: list[float] = []
        for _ in range(repeats):
            for _ in range(runs):
                t0 = time.perf_counter()
                result = once(linear3)
                latencies.append(time.perf_counter() - t0)
                assert result == 3, result

            t0 = time.perf_counter()
            handles = [DBOS.start_workflow(linear3) for _ in range(runs)]
            results = [h.get_result() for h in handles]
            elapsed = time.perf_counter() - t0
            assert results == [3] * runs, results
            rates.append(runs / elapsed)
        return _summarise(latencies, rates)
    finally:
        DBOS.destroy(destroy_registry=True)


def _child(database_url: str | None, runs: int, repeats: int) -> dict[str, float]:
    """Benchmark in this process, creating and dropping a database if none is given."""
    if database_url is not None:
        return _run_dbos(database_url, runs, repeats)
    name, url = _create_database()
    try:
        return _run_dbos(url, runs, repeats)
    finally:
        _drop_database(name)


def measure(database_url: str | None, runs: int, repeats: int = 5) -> dict[str, float]:
    """Benchmark DBOS in a child interpreter and return latency (ms) and throughput (wf/s).

    With ``database_url=None`` a fresh ``cw_bench_dbos_<random>`` database is created here
    and dropped afterwards, even if the child fails or times out.
    """
    if runs < 1 or repeats < 1:
        raise ValueError("runs and repeats must be >= 1")
    name: str | None = None
    if database_url is None:
        name, database_url = _create_database()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--runs",
        str(runs),
        "--repeats",
        str(repeats),
        "--database-url",
        database_url,
    ]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=_timeout_s(runs, repeats) + 30.0,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"dbos_peer child exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"dbos_peer child printed no result:\n{proc.stderr[-4000:]}")
        data: dict[str, Any] = json.loads(lines[-1])
        return {k: float(data[k]) for k in KEYS}
    finally:
        if name is not None:
            _drop_database(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.repeats < 1:
        parser.error("--runs and --repeats must be >= 1")
    # Watchdog: a hung run dumps its stacks and exits instead of blocking forever.
    faulthandler.dump_traceback_later(_timeout_s(args.runs, args.repeats), exit=True)
    try:
        result = _child(args.database_url, args.runs, args.repeats)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
