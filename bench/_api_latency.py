"""The public-API latency figure: what a caller of ``workflow.run()`` waits, as shipped.

Unlike ``latency`` (both callers poll every 2 ms, to measure the run and not the wait),
here each side waits the way its users do, with the runtime's own settings:

- ours: ``workflow.run().result()`` from sync code and ``await workflow.run()`` from a
  coroutine, with ``CeleryRuntime``'s default waiting (``bench_proj`` lowers
  ``poll_interval`` for the other figures; it is put back to the class default here);
- plain: a chain of three no-op ``acks_late`` tasks on the same app, broker and worker,
  awaited with ``AsyncResult.get()`` through the Redis result backend (pub/sub);
- polled: the run started the same way and its row read every 50 ms, as callers waited
  before wake-ups on commit (issue 13): the before, measured in the same run as the after.

The three are interleaved within each repeat (drift hits all alike). Cells: median and
min-max over every sample; the ratio is ours / chain of the medians of the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from types import ModuleType
from typing import Any

from _harness import summary
from celery import chain

#: Upper bound of one run or chain.
RUN_TIMEOUT = 60.0
#: The poll of the "polled" contender: CeleryRuntime.poll_interval before issue 13.
POLLED = 0.05


def _sync_once(proj: ModuleType) -> float:
    start = time.perf_counter()
    result = proj.linear.run().result(timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != 3:
        raise RuntimeError(f"Linear3 returned {result!r}, expected 3")
    return elapsed


async def _async_once(proj: ModuleType) -> float:
    start = time.perf_counter()
    result = await asyncio.wait_for(proj.linear.run(), RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != 3:
        raise RuntimeError(f"Linear3 returned {result!r}, expected 3")
    return elapsed


def _polled_once(proj: ModuleType) -> float:
    start = time.perf_counter()
    run_id = proj.linear.run().run_id
    while not proj.runtime.get_run(run_id).finished:
        time.sleep(POLLED)
    elapsed = time.perf_counter() - start
    if proj.runtime.get_run(run_id).status != "completed":
        raise RuntimeError(f"Linear3 run {run_id} did not complete")
    return elapsed


def _chain_once(proj: ModuleType) -> float:
    start = time.perf_counter()
    add = proj.add
    result = chain(add.s(0), add.s(), add.s()).apply_async().get(timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if result != 3:
        raise RuntimeError(f"the plain chain returned {result!r}, expected 3")
    return elapsed


def api_latency(proj: ModuleType, repeats: int, samples: int, warmup: int) -> dict[str, Any]:
    """``samples`` x ``repeats`` of each contender, interleaved; milliseconds."""
    runtime = proj.runtime
    lowered = runtime.poll_interval
    # The runtime's shipped waiting, not the benchmark's 2 ms polling.
    runtime.poll_interval = type(runtime).poll_interval
    loop = asyncio.new_event_loop()
    try:
        for _ in range(warmup):
            _sync_once(proj)
            loop.run_until_complete(_async_once(proj))
            _chain_once(proj)
        got: dict[str, list[float]] = {"sync": [], "async": [], "polled": [], "chain": []}
        ratios: dict[str, list[float]] = {"sync": [], "async": [], "polled": []}
        for _ in range(repeats):
            this: dict[str, list[float]] = {key: [] for key in got}
            for _ in range(samples):
                this["sync"].append(_sync_once(proj) * 1000)
                this["async"].append(loop.run_until_complete(_async_once(proj)) * 1000)
                this["polled"].append(_polled_once(proj) * 1000)
                this["chain"].append(_chain_once(proj) * 1000)
            for key in ratios:
                ratios[key].append(statistics.median(this[key]) / statistics.median(this["chain"]))
            for key, values in this.items():
                got[key].extend(values)
    finally:
        loop.close()
        runtime.poll_interval = lowered
    chain_median = statistics.median(got["chain"])
    return {
        "sync_ms": summary(got["sync"]),
        "async_ms": summary(got["async"]),
        "polled_ms": summary(got["polled"]),
        "chain_get_ms": summary(got["chain"]),
        "sync_ratio": statistics.median(got["sync"]) / chain_median,
        "async_ratio": statistics.median(got["async"]) / chain_median,
        "polled_ratio": statistics.median(got["polled"]) / chain_median,
        "sync_ratio_per_repeat": summary(ratios["sync"]),
        "async_ratio_per_repeat": summary(ratios["async"]),
        "polled_ratio_per_repeat": summary(ratios["polled"]),
        "samples": samples * repeats,
        "wait": _wait_setting(runtime),
    }


def _wait_setting(runtime: Any) -> str:
    """How the caller waited, for the notes (the runtime's own description if it has one)."""
    describe = getattr(runtime, "describe_waiting", None)
    if callable(describe):
        return str(describe())
    return f"polls the run row every {type(runtime).poll_interval * 1000:.0f} ms"


def api_latency_rows(f: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Table rows: sync and async, each next to the chain's ``.get()``."""
    from _report import cell, ratio

    return [
        (
            f"public API: `workflow.run().result()` vs chain `.get()` ({f['samples']} runs)",
            cell(f["sync_ms"], " ms"),
            cell(f["chain_get_ms"], " ms"),
            ratio(f["sync_ratio"]),
        ),
        (
            f"public API: `await workflow.run()` vs chain `.get()` ({f['samples']} runs)",
            cell(f["async_ms"], " ms"),
            cell(f["chain_get_ms"], " ms"),
            ratio(f["async_ratio"]),
        ),
        (
            "the same run, its row polled every 50 ms (the wait before issue 13) vs `.get()`",
            cell(f["polled_ms"], " ms"),
            cell(f["chain_get_ms"], " ms"),
            ratio(f["polled_ratio"]),
        ),
    ]
