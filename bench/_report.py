"""The benchmark's outputs: the Markdown table and the PNG chart, from the results dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(stat: dict[str, Any] | None, unit: str = "") -> str:
    """``median (min-max) unit`` of a summary, ``-`` when absent."""
    if not stat:
        return "-"
    return f"{_fmt(stat['median'])} ({_fmt(stat['min'])}-{_fmt(stat['max'])}){unit}"


def ratio(value: float | None) -> str:
    """``4.8x``, or ``-``."""
    return "-" if value is None else f"{value:.2f}x"


def _latency_rows(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "hop latency p50, 3 steps",
            cell(f["ours_p50_ms"], " ms"),
            cell(f["plain_p50_ms"], " ms"),
            ratio(f["ratio_per_hop"]["median"]),
        ),
        (
            "hop latency p95, 3 steps",
            cell(f["ours_p95_ms"], " ms"),
            cell(f["plain_p95_ms"], " ms"),
            ratio(f["ours_p95_ms"]["median"] / f["plain_p95_ms"]["median"]),
        ),
        (
            "per step hop (p50 / 3)",
            cell(f["ours_per_hop_ms"], " ms"),
            cell(f["plain_per_hop_ms"], " ms"),
            ratio(f["ratio_per_hop"]["median"]),
        ),
        ("added per step hop (ours - plain)", cell(f["overhead_per_hop_ms"], " ms"), "-", "-"),
    ]


def _throughput_rows(f: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("workers_1", "1 worker"), ("workers_2", "2 workers")):
        if key in f:
            t = f[key]
            label = f"{label}, {f['runs_in_flight']} runs in flight"
            rows.append(
                (
                    f"throughput, {label} (steps/s vs plain tasks/s)",
                    cell(t["ours_steps_per_s"]),
                    cell(t["plain_tasks_per_s"]),
                    ratio(t["ratio"]),
                )
            )
    return rows


def _fanout_rows(f: dict[str, Any]) -> list[Row]:
    return [
        (
            f"fan-out/fan-in, {f['events']} events (ms per event; plain: chord)",
            cell(f["ours_ms_per_event"], " ms"),
            cell(f["chord_ms_per_event"], " ms"),
            ratio(f["ratio"]["median"]),
        )
    ]


def _inprocess_rows(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "in-process runs/s (vs upstream workflows 2.26.1)",
            cell(f["ours_runs_per_s"]),
            cell(f["upstream_runs_per_s"]),
            ratio(f["ratio"]["median"]),
        )
    ]


def _cost_rows(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ours, plain = f.get("ours_worker_rss"), f.get("plain_worker_rss")
    if ours and plain:
        for key, label in (("main_mib", "main"), ("child_mib", "pool process")):
            rows.append(
                (
                    f"peak RSS of a worker {label} (VmHWM)",
                    f"{ours[key]:.1f} MiB",
                    f"{plain[key]:.1f} MiB",
                    ratio(ours[key] / plain[key] if plain[key] else None),
                )
            )
    if "db_bytes_per_run" in f:
        rows.append(
            ("database bytes per finished run", cell(f["db_bytes_per_run"], " B"), "-", "-")
        )
    if "transactions_per_hop" in f:
        rows.append(
            ("database transactions per step hop", cell(f["transactions_per_hop"]), "-", "-")
        )
        rows.append(("database statements per step hop", cell(f["statements_per_hop"]), "-", "-"))
    if "engine_on_postgres_ms_per_run" in f:
        ms = cell(f["engine_on_postgres_ms_per_run"], " ms")
        rows.append(("3-step run, engine in-process over PostgreSQL (no broker)", ms, "-", "-"))
    return rows


def _dbos_rows(f: dict[str, Any], figures: dict[str, Any]) -> list[Row]:
    if f.get("status") != "ok":
        return [
            ("durable peer: DBOS Transact", f"{f.get('status')}: {f.get('reason', '')}", "-", "-")
        ]
    m = f["metrics"]
    rows: list[Row] = []
    lat = figures.get("latency")
    if "latency_ms_median" in m:
        ours = lat["ours_p50_ms"]["median"] if lat else None
        rows.append(
            (
                "3-step latency: ours on Celery p50 (peer: DBOS, in-process, median)",
                cell(lat["ours_p50_ms"], " ms") if lat else "-",
                f"{_fmt(m['latency_ms_median'])} ({_fmt(m['latency_ms_min'])}-"
                f"{_fmt(m['latency_ms_max'])}) ms",
                ratio(ours / m["latency_ms_median"] if ours else None),
            )
        )
    rate = m.get("workflows_per_s_median", m.get("workflows_per_s"))
    tp = figures.get("throughput", {}).get("workers_1")
    if rate is not None:
        ours_rate = tp["ours_steps_per_s"]["median"] / 3 if tp else None
        rows.append(
            (
                "workflows/s: ours 1 worker (peer: DBOS, its own count in flight)",
                _fmt(ours_rate) if ours_rate else "-",
                _fmt(rate),
                ratio(ours_rate / rate if ours_rate else None),
            )
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table: median (min-max) per figure, and the ratio."""
    figures = results["figures"]
    meta = results["meta"]
    rows: list[Row] = []
    from _api_latency import api_latency_rows

    builders = {
        "latency": _latency_rows,
        "api_latency": api_latency_rows,
        "throughput": _throughput_rows,
        "fanout": _fanout_rows,
        "inprocess": _inprocess_rows,
        "cost": _cost_rows,
    }
    for name, build in builders.items():
        if name in figures:
            rows.extend(build(figures[name]))
    if "dbos_peer" in figures:
        rows.extend(_dbos_rows(figures["dbos_peer"], figures))
    lines = [
        f"# celery_workflows benchmark, {meta['started_at']}",
        "",
        f"{meta['mode']} run, {meta['repeats']} repeats per figure, took "
        f"{meta['duration_s']:.0f} s on {meta['cpus']} CPUs. Workers: `celery worker` "
        f"--pool=prefork --concurrency={meta['concurrency']}, Redis broker and backend, "
        "PostgreSQL run store. Cells: median (min-max) over the repeats; ratio = ours / "
        "reference (medians).",
        "",
        "| figure | celery_workflows | reference | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", *[f"- {note}" for note in meta["notes"]], ""]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> str | None:
    """Draw the figures as bar panels in ``path``; a message instead if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart drawn"
    from _chart import CostPanel, panels

    specs = panels(results["figures"])
    if not specs:
        return "no figure to draw"
    # The headline (ratios at a glance) is twice as wide as the other panels.
    wide = isinstance(specs[0], CostPanel)
    cols = 3
    rows = (len(specs) + int(wide) + cols - 1) // cols
    fig = plt.figure(figsize=(5.4 * cols, 4.1 * rows))
    grid = fig.add_gridspec(rows, cols)
    slots = [(r, c) for r in range(rows) for c in range(cols)]
    for spec in specs:
        r, c = slots.pop(0)
        span = 2 if spec is specs[0] and wide else 1
        if span == 2:
            slots.pop(0)
        spec.draw(fig.add_subplot(grid[r, c : c + span]))
    meta = results["meta"]
    fig.suptitle(
        f"celery_workflows vs reference ({meta['mode']} run, {meta['started_at']}; "
        "bars: median, whiskers: min-max)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
