"""How fast is one state edit? Median ``locked()`` + ``set_state`` transaction, and
transactions per second on one run row with 1 and 2 processes.

    .venv/bin/python bench/store_speed.py                # SQLite (temp file) + local PostgreSQL
    .venv/bin/python bench/store_speed.py --postgres-url postgresql+psycopg://u@host/db

Without ``--postgres-url`` a scratch database is created on
postgresql://postgres@127.0.0.1:5432 and dropped afterwards (skipped if unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _harness import percentile

from celery_workflows.store.base import NewRun, RunStore
from celery_workflows.store.memory import InMemoryRunStore
from celery_workflows.store.sql import SqlRunStore, upgrade

RUN_ID = "bench-run"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _edit(store: RunStore) -> None:
    async with store.locked(RUN_ID) as txn:
        state = dict(txn.run.state)
        state["count"] += 1
        txn.set_state(state)


async def edit_latencies(store: RunStore, iterations: int) -> list[float]:
    """Seconds per edit transaction, after a warm-up."""
    await store.create_run(NewRun(RUN_ID, "bench", {"count": 0, "payload": "x" * 200}, {}), [])
    for _ in range(20):
        await _edit(store)
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await _edit(store)
        samples.append(time.perf_counter() - started)
    return samples


async def _count_edits(url: str, seconds: float, barrier: Any) -> int:
    store = SqlRunStore(url, busy_timeout_s=60)
    try:
        await store.get_run(RUN_ID)  # connect before the clock starts
        barrier.wait(timeout=60)
        done, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await _edit(store)
            done += 1
        return done
    finally:
        await store.close()


def _edits_in_process(url: str, seconds: float, barrier: Any, results: Any) -> None:
    results.put(asyncio.run(_count_edits(url, seconds, barrier)))


def throughput(url: str, processes: int, seconds: float) -> float:
    """Edit transactions per second on one row, summed over ``processes`` processes."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_edits_in_process, args=(url, seconds, barrier, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        total = sum(int(results.get(timeout=seconds + 120)) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return total / seconds


@contextmanager
def scratch_postgres(url: str | None) -> Iterator[str | None]:
    """The given URL, or a scratch database on the local server (None if unreachable)."""
    if url is not None:
        yield url
        return
    import psycopg  # the benchmark, not the package, creates the database

    name = f"cw_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(url: str | None, iterations: int, seconds: float) -> dict[str, float]:
    """One row of the table; ``url`` None measures the in-memory store."""
    if url is None:
        samples = asyncio.run(edit_latencies(InMemoryRunStore(), iterations))
        return _latency_row(samples)
    upgrade(url)

    async def latencies() -> list[float]:
        store = SqlRunStore(url)
        try:
            return await edit_latencies(store, iterations)
        finally:
            await store.close()

    row = _latency_row(asyncio.run(latencies()))
    row["tps1"] = throughput(url, 1, seconds)
    row["tps2"] = throughput(url, 2, seconds)
    return row


def _latency_row(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": percentile(ordered, 0.95) * 1000,
    }


def print_table(rows: dict[str, dict[str, float]]) -> None:
    """A small fixed-width table."""
    header = (
        f"{'store':<12}{'median edit':>14}{'p95 edit':>12}{'tx/s 1 proc':>14}{'tx/s 2 procs':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        tps1 = f"{row['tps1']:.0f}" if "tps1" in row else "-"
        tps2 = f"{row['tps2']:.0f}" if "tps2" in row else "-"
        print(f"{name:<12}{row['median_ms']:>11.3f} ms{row['p95_ms']:>9.3f} ms{tps1:>14}{tps2:>15}")


def main() -> None:
    """Parse arguments, measure every store, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    rows["memory"] = measure(None, args.iterations, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        rows["sqlite"] = measure(
            f"sqlite:///{Path(tmp) / 'runs.db'}", args.iterations, args.seconds
        )
    with scratch_postgres(args.postgres_url) as pg_url:
        if pg_url is not None:
            rows["postgresql"] = measure(pg_url, args.iterations, args.seconds)
    print_table(rows)


if __name__ == "__main__":
    main()
