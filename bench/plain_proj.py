"""A plain Celery project: the same tasks and worker settings as ``bench_proj`` without
celery_workflows imported, so a plain worker's memory is Celery's alone."""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("CW_BENCH_BROKER", "redis://127.0.0.1:6379/6")
app = Celery("plain_proj", broker=BROKER, backend=BROKER)
app.conf.broker_connection_retry_on_startup = True
#: celery_workflows.celery.runtime.SAFE_SETTINGS, which bench/run.py checks stay equal.
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
)


@app.task(name="bench.add", acks_late=True, shared=False)
def add(n: int) -> int:
    """One hop of the plain chain."""
    return n + 1


@app.task(name="bench.total", acks_late=True, shared=False)
def total(values: list[int]) -> int:
    """The join of the plain chord."""
    return len(values)
