"""One benchmark run: every figure of celery_workflows next to its reference.

    .venv/bin/python bench/run.py            # full run (several minutes)
    .venv/bin/python bench/run.py --quick    # small counts, for the smoke test
    .venv/bin/python bench/run.py --only latency
    .venv/bin/python bench/run.py --only api_latency --only throughput --in-flight 300

Figures: latency (3-step run vs a plain Celery chain), api_latency (the same through the
public API, ``workflow.run().result()`` and ``await workflow.run()``, vs a chain's
``.get()``), throughput (runs in flight, 1 and 2
workers, vs plain tasks), fanout (fan-out/fan-in vs a chord), inprocess (LocalRuntime vs
upstream workflows), cost (worker peak RSS, database bytes per run, statements and
transactions per step hop), dbos_peer (bench/dbos_peer.py, when present).

It starts Redis/PostgreSQL if they do not answer (scripts/services), its own
``celery worker`` processes (prefork, same concurrency for every contender), uses Redis
database 8 and scratch databases ``cw_bench_*``, and removes all of them at the end.
Results: ``<out>/<timestamp>.json``, ``<out>/latest.md``, ``<out>/latest.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
from _harness import BROKER_URL, HERE, ROOT, WORKER_CONCURRENCY, scratch_database

FIGURES = ("latency", "api_latency", "throughput", "fanout", "inprocess", "cost", "dbos_peer")
CELERY_FIGURES = {"latency", "api_latency", "throughput", "fanout", "cost"}


@dataclass(frozen=True)
class Counts:
    """How much each figure measures."""

    repeats: int
    latency_samples: int
    api_samples: int
    warmup: int
    in_flight: int
    fanout_events: int
    inprocess_runs: int
    sql_runs: int
    peer_runs: int


FULL = Counts(
    repeats=5, latency_samples=50, api_samples=40, warmup=10, in_flight=1000, fanout_events=100,
    inprocess_runs=300, sql_runs=20, peer_runs=50,
)  # fmt: skip
QUICK = Counts(
    repeats=2, latency_samples=20, api_samples=5, warmup=3, in_flight=100, fanout_events=20,
    inprocess_runs=20, sql_runs=5, peer_runs=10,
)  # fmt: skip


def _worker_env(database_url: str) -> dict[str, str]:
    paths = [str(HERE), str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    return {
        **os.environ,
        "CW_BENCH_DATABASE": database_url,
        "CW_BENCH_BROKER": BROKER_URL,
        "PYTHONPATH": os.pathsep.join(paths),
    }


def celery_figures(selected: set[str], counts: Counts, logs: Path) -> dict[str, Any]:
    """Latency, throughput, fan-out and the worker/database costs, on real workers."""
    import psycopg
    from _celery_figures import PlainClient

    out: dict[str, Any] = {}
    with scratch_database("celery") as (name, url):
        env = _worker_env(url)
        os.environ.update(CW_BENCH_DATABASE=url, CW_BENCH_BROKER=BROKER_URL)
        import bench_proj
        import plain_proj

        _check_same_settings(bench_proj.app, plain_proj.app)
        bench_proj.runtime.store  # noqa: B018 - creates the schema before workers start
        client = PlainClient()
        try:
            with psycopg.connect(_harness.conninfo(name), autocommit=True) as conn:
                out = _on_workers(selected, counts, logs, env, conn, bench_proj, client)
        finally:
            client.close()
            _close_store(bench_proj.runtime)
    return out


def _on_workers(
    selected: set[str],
    counts: Counts,
    logs: Path,
    env: dict[str, str],
    conn: Any,
    proj: Any,
    client: Any,
) -> dict[str, Any]:
    """Each setup of workers once: ours x1, plain x1, ours x2, plain x2."""
    from _celery_figures import fanout, latency, ours_throughput, plain_throughput

    out: dict[str, Any] = {}
    repeats, n = counts.repeats, counts.in_flight
    measure_batches = bool(selected & {"throughput", "cost"})
    tp: dict[str, Any] = {"runs_in_flight": n}
    cost: dict[str, Any] = {}
    with _harness.workers("bench_proj", 1, env, logs) as group:
        if measure_batches:
            ours1 = ours_throughput(proj, conn, repeats, n)
            cost["ours_worker_rss"] = group.peak_rss()
            cost["db_bytes_per_run"] = ours1["db_bytes_per_run"]
        if "latency" in selected:
            out["latency"] = latency(proj, client, repeats, counts.latency_samples, counts.warmup)
        if "api_latency" in selected:
            from _api_latency import api_latency

            samples, warmup = counts.api_samples, counts.warmup
            out["api_latency"] = api_latency(proj, repeats, samples, warmup)
        if "fanout" in selected:
            out["fanout"] = fanout(proj, client, repeats, counts.fanout_events)
    if measure_batches:
        with _harness.workers("plain_proj", 1, env, logs) as group:
            plain1 = plain_throughput(client, repeats, n)
            cost["plain_worker_rss"] = group.peak_rss()
        tp["workers_1"] = _pair(ours1, plain1)
    if "throughput" in selected:
        with _harness.workers("bench_proj", 2, env, logs):
            ours2 = ours_throughput(proj, conn, repeats, n)
        with _harness.workers("plain_proj", 2, env, logs):
            plain2 = plain_throughput(client, repeats, n)
        tp["workers_2"] = _pair(ours2, plain2)
        out["throughput"] = tp
    if "cost" in selected:
        out["cost"] = cost
    return out


def _pair(ours: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    return {
        "ours_steps_per_s": ours["steps_per_s"],
        "ours_start_runs_per_s": ours["start_runs_per_s"],
        "plain_tasks_per_s": plain["tasks_per_s"],
        "ratio": ours["steps_per_s"]["median"] / plain["tasks_per_s"]["median"],
    }


def _check_same_settings(ours_app: Any, plain_app: Any) -> None:
    from celery_workflows.celery.runtime import SAFE_SETTINGS

    for key in SAFE_SETTINGS:
        if ours_app.conf[key] != plain_app.conf[key]:
            raise RuntimeError(f"plain_proj's {key} differs from celery_workflows': fix it")


def _close_store(runtime: Any) -> None:
    import asyncio

    try:
        asyncio.run(runtime.store.close())
    except Exception as exc:  # the database is dropped next anyway
        print(f"bench: closing the run store failed: {exc}", file=sys.stderr)


def cost_sql(counts: Counts) -> dict[str, Any]:
    """Statements and transactions per step hop (in-process engine over PostgreSQL)."""
    from _local_figures import sql_per_hop

    with scratch_database("sql") as (_, url):
        return sql_per_hop(url, counts.repeats, counts.sql_runs)


def dbos_peer(counts: Counts) -> dict[str, Any]:
    """The durable peer's figures from bench/dbos_peer.py, or why there are none."""
    try:
        import dbos_peer as peer
    except ImportError as exc:
        return {"status": "not available", "reason": f"bench/dbos_peer.py: {exc}"}
    try:
        with scratch_database("dbos") as (name, _):
            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
            metrics = peer.measure(url, counts.peer_runs)
    except Exception as exc:
        reason = " ".join(str(exc).split())[-300:]
        return {"status": "failed", "reason": f"{type(exc).__name__}: {reason}"}
    return {"status": "ok", "runs": counts.peer_runs, "metrics": dict(metrics)}


def measure(selected: set[str], counts: Counts) -> dict[str, Any]:
    """Every selected figure, in an order that lets workers be started once per setup."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cw_bench_logs_") as logs:
        if selected & CELERY_FIGURES:
            figures.update(celery_figures(selected, counts, Path(logs)))
    if "inprocess" in selected:
        from _local_figures import inprocess

        figures["inprocess"] = inprocess(counts.repeats, counts.inprocess_runs, counts.warmup)
    if "cost" in selected:
        figures.setdefault("cost", {}).update(cost_sql(counts))
    if "dbos_peer" in selected:
        figures["dbos_peer"] = dbos_peer(counts)
    return figures


NOTES = {
    "latency": "latency: start-to-result from this process; one worker serves both contenders, "
    "runs and chains interleaved; both callers poll for the result every 2 ms (ours the run "
    "row, plain the result key in Redis).",
    "api_latency": "public API: start-to-result through `workflow.run().result()` (sync) and "
    "`await workflow.run()` (async) with the runtime's shipped waiting, next to a chain of 3 "
    "no-op acks_late tasks awaited with `.get()` (Redis result backend, pub/sub); one worker "
    "serves all three, interleaved; median (min-max) over every run.",
    "throughput": "throughput: start N runs (N chains of 3 for plain, the same 3N messages), "
    "time until all finished, starting included; each contender on its own fresh workers.",
    "fanout": "fan-out: one step returns N events, a num_workers=4 step edits state once per "
    "event, a list[E] step joins; plain: a chord of N tasks and a join task.",
    "inprocess": "in-process: runs one after another in one event loop; ours on LocalRuntime "
    "with the in-memory store.",
    "cost": "cost: RSS is the peak (VmHWM) after the 1-worker throughput repeats; the plain "
    "worker does not import celery_workflows. Bytes per run: pg_total_relation_size of the "
    "cw_ tables after N runs minus after TRUNCATE, / N (no vacuum). Statements and "
    "transactions: the engine in-process over PostgreSQL, the run's start included, / 3; "
    "a Celery worker adds its sweeper's polling (once a second per process).",
    "dbos_peer": "durable peer: bench/dbos_peer.py's own measurement (DBOS in one process, no "
    "broker); its workflows/s has its own number of runs in flight.",
}


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    """The JSON, latest.md and latest.png; returns the JSON's path."""
    from _report import chart, markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started_at"].replace(":", "").replace("-", "")
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "latest.md").write_text(markdown(results))
    skipped = chart(results, out_dir / "latest.png")
    if skipped:
        print(f"bench: {skipped}", file=sys.stderr)
    return json_path


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument(
        "--only", choices=FIGURES, action="append", help="measure this figure (repeatable)"
    )
    parser.add_argument("--in-flight", type=int, help="runs in flight for throughput")
    parser.add_argument("--repeats", type=int, help="repeats per figure")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    if args.in_flight is not None:
        counts = replace(counts, in_flight=args.in_flight)
    if args.repeats is not None:
        counts = replace(counts, repeats=args.repeats)
    selected = set(args.only) if args.only else set(FIGURES)
    started_at = datetime.now(UTC).replace(microsecond=0)
    with _harness.exclusive():
        clock = time.perf_counter()  # the run, not the wait for another one
        _harness.ensure_services()
        _harness.flush_redis()
        try:
            figures = measure(selected, counts)
        finally:
            _harness.flush_redis()
    results = {
        "meta": {
            "started_at": started_at.isoformat().replace("+00:00", "Z"),
            "duration_s": time.perf_counter() - clock,
            "mode": "quick" if args.quick else "full",
            "only": args.only,
            "repeats": counts.repeats,
            "counts": asdict(counts),
            "concurrency": WORKER_CONCURRENCY,
            "pool": "prefork",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "notes": [note for name, note in NOTES.items() if name in selected],
        },
        "figures": figures,
    }
    path = write_results(results, args.out)
    print((args.out / "latest.md").read_text())
    print(f"bench: wrote {path}, latest.md and latest.png in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
