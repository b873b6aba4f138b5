"""Celery project of the benchmarks: the workflows on a CeleryRuntime, plain tasks next to
them (a 3-task chain, a chord), all on the same app, broker and worker."""

from __future__ import annotations

import os

from celery import Celery
from workloads import FanOut, Linear3

from celery_workflows import CeleryRuntime

BROKER = os.environ.get("CW_BENCH_BROKER", "redis://127.0.0.1:6379/6")
app = Celery("bench_proj", broker=BROKER, backend=BROKER)
app.conf.broker_connection_retry_on_startup = True
runtime = CeleryRuntime(app, database_url=os.environ.get("CW_BENCH_DATABASE"))
runtime.poll_interval = 0.002  # measure the run, not the caller's polling

linear = Linear3(runtime=runtime, timeout=None)
fanout = FanOut(runtime=runtime, timeout=None)

__all__ = ["Linear3", "add", "app", "fanout", "linear", "runtime", "total"]


@app.task(name="bench.add", acks_late=True, shared=False)
def add(n: int) -> int:
    """One hop of the plain chain."""
    return n + 1


@app.task(name="bench.total", acks_late=True, shared=False)
def total(values: list[int]) -> int:
    """The join of the plain chord."""
    return len(values)
