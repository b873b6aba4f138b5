"""Figures measured on real ``celery worker`` processes: hop latency, throughput with runs
in flight, fan-out/fan-in. Ours runs through ``bench_proj``; plain Celery tasks are served
by the same worker (latency, fan-out) or by ``plain_proj`` workers (throughput: a worker
without our package).

Both sides wait alike: the caller polls the store of record every 2 ms (ours: the run row,
``runtime.poll_interval``; plain: the task's result key in Redis). Celery's own
``AsyncResult.get()`` is not used: with celery 5.7.0 its Redis pub/sub consumer once missed
a result already stored here and kept waiting for it (minutes, one chain out of thousands).
"""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import Any

import psycopg
import redis
from _harness import (
    BROKER_URL,
    percentile,
    run_tables_bytes,
    summary,
    truncate_runs,
    wait_until,
)
from celery import Celery, chain, chord
from celery.backends.redis import RedisBackend

#: Upper bound for one run or chain in the latency and fan-out figures.
RUN_TIMEOUT = 120.0
#: How often a caller looks for a single result (ours: CeleryRuntime.poll_interval).
POLL = 0.002


class PolledRedisBackend(RedisBackend):
    """Celery's Redis result backend without the pub/sub subscription it makes for every
    message sent: the benchmark polls result keys instead."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Subscribe to nothing."""


class PlainClient:
    """Sends plain tasks and waits for their results by polling their keys in Redis."""

    def __init__(self) -> None:
        backend = f"{__name__}:{PolledRedisBackend.__name__}+{BROKER_URL}"
        self.app = Celery("bench_client", broker=BROKER_URL, backend=backend)
        self.app.conf.update(
            task_serializer="json", result_serializer="json", accept_content=["json"]
        )
        self.redis = redis.Redis.from_url(BROKER_URL)

    def chain3(self) -> str:
        """Send a chain of three ``bench.add``; the id of its last task."""
        add = self.app.signature
        return str(chain(add("bench.add", (0,)), add("bench.add"), add("bench.add"))().id)

    def wait(self, task_ids: list[str], timeout: float, poll: float = POLL) -> list[Any]:
        """The results of ``task_ids`` once all are stored (TimeoutError after ``timeout``)."""
        backend = self.app.backend
        keys = {backend.get_key_for_task(t).decode(): i for i, t in enumerate(task_ids)}
        values: list[Any] = [None] * len(task_ids)
        deadline = time.monotonic() + timeout
        while keys:
            pending = list(keys)
            for key, raw in zip(pending, self.redis.mget(pending), strict=True):
                if raw is not None:
                    meta = json.loads(raw)
                    if meta["status"] != "SUCCESS":
                        raise RuntimeError(f"plain task {meta['task_id']} ended {meta['status']}")
                    values[keys.pop(key)] = meta["result"]
            if keys:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(keys)} plain results missing after {timeout}s")
                time.sleep(poll)
        return values

    def chord(self, events: int) -> str:
        """Send a chord of ``events`` ``bench.add`` and a ``bench.total``; the join's id."""
        header = [self.app.signature("bench.add", (i,)) for i in range(events)]
        return str(chord(header, app=self.app)(self.app.signature("bench.total")).id)

    def close(self) -> None:
        """Release the connections."""
        self.redis.close()
        self.app.close()


# --- hop latency ----------------------------------------------------------------------


def _ours_once(proj: ModuleType) -> float:
    start = time.perf_counter()
    result = proj.linear.run().result(timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != 3:
        raise RuntimeError(f"Linear3 returned {result!r}, expected 3")
    return elapsed


def _chain_once(client: PlainClient) -> float:
    start = time.perf_counter()
    [result] = client.wait([client.chain3()], RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != 3:
        raise RuntimeError(f"the plain chain returned {result!r}, expected 3")
    return elapsed


def latency(
    proj: ModuleType, client: PlainClient, repeats: int, samples: int, warmup: int
) -> dict[str, Any]:
    """Start-to-result of the 3-step workflow next to a chain of 3 acks_late tasks.

    Each repeat takes ``samples`` of each, interleaved (drift hits both alike); its p50 and
    p95 are one sample of the figure.
    """
    for _ in range(warmup):
        _ours_once(proj)
        _chain_once(client)
    ours: dict[str, list[float]] = {"p50": [], "p95": []}
    plain: dict[str, list[float]] = {"p50": [], "p95": []}
    ratios: list[float] = []
    for _ in range(repeats):
        ours_s, plain_s = [], []
        for _ in range(samples):
            ours_s.append(_ours_once(proj))
            plain_s.append(_chain_once(client))
        for key, fraction in (("p50", 0.5), ("p95", 0.95)):
            ours[key].append(percentile(ours_s, fraction) * 1000)
            plain[key].append(percentile(plain_s, fraction) * 1000)
        ratios.append(ours["p50"][-1] / plain["p50"][-1])
    return {
        "ours_p50_ms": summary(ours["p50"]),
        "ours_p95_ms": summary(ours["p95"]),
        "plain_p50_ms": summary(plain["p50"]),
        "plain_p95_ms": summary(plain["p95"]),
        "ours_per_hop_ms": summary([v / 3 for v in ours["p50"]]),
        "plain_per_hop_ms": summary([v / 3 for v in plain["p50"]]),
        "overhead_per_hop_ms": summary(
            [(o - p) / 3 for o, p in zip(ours["p50"], plain["p50"], strict=True)]
        ),
        "ratio_per_hop": summary(ratios),
        "samples_per_repeat": samples,
    }


# --- throughput -------------------------------------------------------------------------


def _finished(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), "
        "count(*) FILTER (WHERE status IN ('failed', 'cancelled')) FROM cw_runs"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def ours_batch(proj: ModuleType, conn: psycopg.Connection[Any], runs: int) -> dict[str, float]:
    """Start ``runs`` runs at once; seconds until all completed, start time, bytes/run."""
    truncate_runs(conn)
    empty = run_tables_bytes(conn)
    start = time.perf_counter()
    for _ in range(runs):
        proj.linear.run()
    started = time.perf_counter() - start

    def done() -> bool:
        completed, failed = _finished(conn)
        if failed:
            raise RuntimeError(f"{failed} benchmark runs failed")
        return completed >= runs

    wait_until(done, timeout=60 + runs * 0.5, what=f"{runs} runs to complete", poll=0.05)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "start_seconds": started,
        "bytes_per_run": (run_tables_bytes(conn) - empty) / runs,
    }


def plain_batch(client: PlainClient, chains: int) -> float:
    """Send ``chains`` chains of 3 acks_late tasks at once; seconds until all finished."""
    start = time.perf_counter()
    last_ids = [client.chain3() for _ in range(chains)]
    values = client.wait(last_ids, timeout=60 + chains * 0.5, poll=0.05)
    if any(v != 3 for v in values):
        raise RuntimeError("a plain chain did not return 3")
    return time.perf_counter() - start


def ours_throughput(
    proj: ModuleType, conn: psycopg.Connection[Any], repeats: int, runs: int
) -> dict[str, Any]:
    """Steps per second with ``runs`` runs in flight, and database bytes per finished run."""
    ours_batch(proj, conn, max(10, runs // 10))  # warm-up: every pool process, every step
    batches = [ours_batch(proj, conn, runs) for _ in range(repeats)]
    truncate_runs(conn)
    return {
        "steps_per_s": summary([3 * runs / b["seconds"] for b in batches]),
        "start_runs_per_s": summary([runs / b["start_seconds"] for b in batches]),
        "db_bytes_per_run": summary([b["bytes_per_run"] for b in batches]),
    }


def plain_throughput(client: PlainClient, repeats: int, chains: int) -> dict[str, Any]:
    """Tasks per second for the same number of messages (``chains`` chains of 3)."""
    plain_batch(client, max(10, chains // 10))
    seconds = [plain_batch(client, chains) for _ in range(repeats)]
    return {"tasks_per_s": summary([3 * chains / s for s in seconds])}


# --- fan-out / fan-in -----------------------------------------------------------------


def _fanout_once(proj: ModuleType, events: int) -> float:
    start = time.perf_counter()
    result = proj.fanout.run(n=events).result(timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != events:
        raise RuntimeError(f"FanOut gathered {result!r} events, expected {events}")
    return elapsed


def _chord_once(client: PlainClient, events: int) -> float:
    start = time.perf_counter()
    [result] = client.wait([client.chord(events)], RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != events:
        raise RuntimeError(f"the plain chord joined {result!r} results, expected {events}")
    return elapsed


def fanout(proj: ModuleType, client: PlainClient, repeats: int, events: int) -> dict[str, Any]:
    """Milliseconds per event of a fan-out/fan-in run, next to a plain Celery chord."""
    _fanout_once(proj, min(events, 10))
    _chord_once(client, min(events, 10))
    ours, plain = [], []
    for _ in range(repeats):
        ours.append(_fanout_once(proj, events) * 1000 / events)
        plain.append(_chord_once(client, events) * 1000 / events)
    return {
        "ours_ms_per_event": summary(ours),
        "chord_ms_per_event": summary(plain),
        "ratio": summary([o / p for o, p in zip(ours, plain, strict=True)]),
        "events": events,
    }
