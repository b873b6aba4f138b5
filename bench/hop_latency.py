"""3-step run latency: celery_workflows next to a plain Celery chain of 3 acks_late tasks.

Same broker (Redis), same worker (one ``celery worker`` process, prefork, concurrency 2).
Usage: ``.venv/bin/python bench/hop_latency.py [runs]``. Needs Redis and PostgreSQL on
127.0.0.1 (``scripts/services`` starts them). Reports median, p95, min and max in ms.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis
from _harness import percentile
from celery import chain

HERE = Path(__file__).parent


def _database() -> tuple[str, str]:
    name = f"cw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = percentile(ms, 0.95)
    return (
        f"{label:<28} median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f}  "
        f"min {ms[0]:7.1f}  max {ms[-1]:7.1f}  (n={len(ms)})"
    )


def main(runs: int) -> None:
    name, url = _database()
    broker = "redis://127.0.0.1:6379/6"
    redis.Redis.from_url(broker).flushdb()
    os.environ.update(CW_BENCH_DATABASE=url, CW_BENCH_BROKER=broker)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench_proj", "worker", "--concurrency=2",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env=env, start_new_session=True,
    )  # fmt: skip
    sys.path.insert(0, str(HERE))
    import bench_proj

    try:
        for _ in range(10):  # warm-up: worker boot, connections, first imports
            bench_proj.linear.run().result(timeout=60)
            chain(bench_proj.add.s(0), bench_proj.add.s(), bench_proj.add.s())().get(timeout=60)
        ours, plain = [], []
        for _ in range(runs):
            start = time.perf_counter()
            bench_proj.linear.run().result(timeout=60)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            chain(bench_proj.add.s(0), bench_proj.add.s(), bench_proj.add.s())().get(timeout=60)
            plain.append(time.perf_counter() - start)
        print(_summary("celery_workflows 3 steps", ours))
        print(_summary("plain Celery chain 3 tasks", plain))
        ratio = statistics.median(ours) / statistics.median(plain)
        print(f"ratio (medians): {ratio:.2f}x")
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        _drop(name)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
