"""Figures measured in this process: the 3-step workflow in-process next to upstream
``workflows``, and the database statements and transactions one step hop costs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from _harness import summary
from sqlalchemy import event
from workflows import Context as UpContext
from workflows import Workflow as UpWorkflow
from workflows import step as up_step
from workflows.events import Event as UpEvent
from workflows.events import StartEvent as UpStartEvent
from workflows.events import StopEvent as UpStopEvent
from workloads import Linear3

from celery_workflows.context.state_store import DictState
from celery_workflows.events import StartEvent
from celery_workflows.runtime.engine import Dispatch, Engine
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore


class UpOne(UpEvent):
    pass


class UpTwo(UpEvent):
    pass


class UpstreamLinear3(UpWorkflow):
    """``workloads.Linear3`` written against upstream llama-index-workflows."""

    @up_step
    async def first(self, ctx: UpContext, ev: UpStartEvent) -> UpOne:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return UpOne()

    @up_step
    async def second(self, ctx: UpContext, ev: UpOne) -> UpTwo:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return UpTwo()

    @up_step
    async def third(self, ctx: UpContext, ev: UpTwo) -> UpStopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return UpStopEvent(result=state["n"])


# --- in-process runs/s ------------------------------------------------------------------


async def _runs_per_second(make: Callable[[], Any], runs: int, warmup: int) -> float:
    workflow = make()  # a fresh instance (and runtime) per repeat: no history carried over
    for _ in range(warmup):
        await _checked(workflow.run())
    start = time.perf_counter()
    for _ in range(runs):
        await _checked(workflow.run())
    return runs / (time.perf_counter() - start)


async def _checked(handler: Awaitable[Any]) -> None:
    result = await asyncio.wait_for(handler, 60)
    if result != 3:
        raise RuntimeError(f"Linear3 returned {result!r}, expected 3")


async def _inprocess(repeats: int, runs: int, warmup: int) -> dict[str, Any]:
    ours, upstream = [], []
    for _ in range(repeats):
        ours.append(
            await _runs_per_second(
                lambda: Linear3(runtime=LocalRuntime(), timeout=None), runs, warmup
            )
        )
        upstream.append(await _runs_per_second(lambda: UpstreamLinear3(timeout=None), runs, warmup))
    return {
        "ours_runs_per_s": summary(ours),
        "upstream_runs_per_s": summary(upstream),
        "ratio": summary([o / u for o, u in zip(ours, upstream, strict=True)]),
        "runs_per_repeat": runs,
    }


def inprocess(repeats: int, runs: int, warmup: int) -> dict[str, Any]:
    """Sequential runs/s of Linear3: LocalRuntime (in-memory store) vs upstream workflows."""
    return asyncio.run(_inprocess(repeats, runs, warmup))


# --- statements and transactions per hop --------------------------------------------------


class _Recorder:
    """A dispatcher that keeps deliveries for the caller to execute."""

    def __init__(self) -> None:
        self.sent: list[Dispatch] = []

    def dispatch(self, items: Any) -> None:
        self.sent.extend(items)


class _CountingCursor(psycopg.Cursor[Any]):
    """A psycopg cursor that reports each statement it sends (pipelined ones too)."""

    counter: _SqlCounter | None = None

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        if self.counter is not None:
            self.counter.add("statements", 1)
        return super().execute(query, params, **kw)

    def executemany(self, query: Any, params_seq: Any, **kw: Any) -> None:
        params_seq = list(params_seq)
        if self.counter is not None:
            self.counter.add("statements", len(params_seq))
        super().executemany(query, params_seq, **kw)


class _SqlCounter:
    """Counts statements (at the driver: SQLAlchemy's and the pipelined hot path's),
    commits and rollbacks of a store's engine (any thread)."""

    def __init__(self, engine: Any) -> None:
        self._lock = threading.Lock()
        self.counts = {"statements": 0, "commits": 0, "rollbacks": 0}
        _CountingCursor.counter = self
        event.listen(engine, "checkout", self._use_counting_cursor)
        event.listen(engine, "commit", self._bump("commits"))
        event.listen(engine, "rollback", self._bump("rollbacks"))

    @staticmethod
    def _use_counting_cursor(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = _CountingCursor

    def add(self, key: str, n: int) -> None:
        """Count ``n`` more of ``key``."""
        with self._lock:
            self.counts[key] += n

    def _bump(self, key: str) -> Callable[..., None]:
        def bump(*_: Any, **__: Any) -> None:
            self.add(key, 1)

        return bump

    def take(self) -> dict[str, int]:
        """The counts so far, then zero."""
        with self._lock:
            counts = dict(self.counts)
            self.counts = dict.fromkeys(counts, 0)
        return counts


async def _drive(engine: Engine, recorder: _Recorder, binding: Any) -> str:
    run_id = f"sql-{uuid.uuid4().hex}"
    await engine.start(binding, StartEvent(), run_id=run_id, state=DictState(), timeout=None)
    while recorder.sent:
        item = recorder.sent.pop(0)
        await engine.execute(item.delivery_id, workflow_name=item.workflow_name)
    return run_id


async def _sql_per_hop(url: str, repeats: int, runs: int) -> dict[str, Any]:
    store = SqlRunStore(url, create_schema=True)
    try:
        counter = _SqlCounter(store._db.engine)
        recorder = _Recorder()
        engine = Engine(store, recorder)
        binding = engine.register(Linear3(timeout=None))
        for _ in range(3):
            await _drive(engine, recorder, binding)  # warm-up: pool, statement cache
        samples: dict[str, list[float]] = {"statements": [], "transactions": [], "ms": []}
        rollbacks = 0
        for _ in range(repeats):
            counter.take()
            start = time.perf_counter()
            run_ids = [await _drive(engine, recorder, binding) for _ in range(runs)]
            elapsed = time.perf_counter() - start
            counts = counter.take()
            for run_id in run_ids:
                if (await store.get_run(run_id)).status != "completed":
                    raise RuntimeError(f"run {run_id} did not complete")
            hops = 3 * runs
            samples["statements"].append(counts["statements"] / hops)
            samples["transactions"].append((counts["commits"] + counts["rollbacks"]) / hops)
            samples["ms"].append(elapsed * 1000 / runs)
            rollbacks += counts["rollbacks"]
        return {
            "statements_per_hop": summary(samples["statements"]),
            "transactions_per_hop": summary(samples["transactions"]),
            "rollbacks_total": rollbacks,
            "engine_on_postgres_ms_per_run": summary(samples["ms"]),
            "runs_per_repeat": runs,
        }
    finally:
        await store.close()


def sql_per_hop(url: str, repeats: int, runs: int) -> dict[str, Any]:
    """Statements and transactions per step hop: the engine in-process over PostgreSQL.

    A hop's share of the run's start transaction is included (totals / 3 per run)."""
    return asyncio.run(_sql_per_hop(url, repeats, runs))
