"""The chart's panels: one small bar chart per figure, ours next to its reference.

Only ``draw`` touches matplotlib (its axes come from the caller), so this module imports
without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OURS, REFERENCE, PEER = "#2a6fb0", "#a0a0a0", "#e08a2c"
WORSE, BETTER = "#c8553d", "#4f9d69"


@dataclass
class Bar:
    """One bar: the median, whiskers from min to max."""

    label: str
    median: float
    low: float
    high: float
    color: str

    @classmethod
    def of(cls, label: str, stat: dict[str, Any], color: str, scale: float = 1.0) -> Bar:
        """A bar from a summary dict (median, min, max)."""
        return cls(label, stat["median"] * scale, stat["min"] * scale, stat["max"] * scale, color)

    @classmethod
    def single(cls, label: str, value: float, color: str) -> Bar:
        """A bar for a number measured once (no whiskers)."""
        return cls(label, value, value, value, color)


@dataclass
class Panel:
    """A titled bar chart; ``note`` goes under the title (the ratio, the direction)."""

    title: str
    ylabel: str
    bars: list[Bar] = field(default_factory=list)
    note: str = ""

    def draw(self, ax: Any) -> None:
        """Draw on a matplotlib Axes."""
        xs = list(range(len(self.bars)))
        heights = [b.median for b in self.bars]
        errors = [
            [b.median - b.low for b in self.bars],
            [b.high - b.median for b in self.bars],
        ]
        ax.bar(xs, heights, color=[b.color for b in self.bars], yerr=errors, capsize=4)
        top = max((b.high for b in self.bars), default=1.0) or 1.0
        for x, bar in zip(xs, self.bars, strict=True):
            ax.text(x, bar.high + top * 0.02, _short(bar.median), ha="center", fontsize=9)
        ax.set_xticks(xs, [b.label for b in self.bars], fontsize=8)
        ax.set_ylim(0, top * 1.18)
        ax.set_ylabel(self.ylabel, fontsize=9)
        ax.set_title(f"{self.title}\n{self.note}" if self.note else self.title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)


@dataclass
class CostPanel:
    """The headline: for each figure, how many times more ours costs than its reference
    (time, or 1/rate, or memory), on a log scale around 1."""

    entries: list[tuple[str, float]]

    def draw(self, ax: Any) -> None:
        """Draw horizontal bars on a matplotlib Axes."""
        labels = [label for label, _ in self.entries]
        factors = [factor for _, factor in self.entries]
        ys = list(range(len(factors)))[::-1]
        colors = [WORSE if f > 1 else BETTER for f in factors]
        ax.barh(ys, [f - 1 if f > 1 else -(1 - f) for f in factors], left=1, color=colors)
        ax.axvline(1, color="black", linewidth=0.8)
        ax.set_xscale("log")
        for y, factor in zip(ys, factors, strict=True):
            text = f"{factor:.2f}x" if factor >= 1 else f"{1 / factor:.2f}x better"
            ax.text(max(factor, 1.0) * 1.06, y, text, va="center", ha="left", fontsize=9)
        ticks = [t for t in (0.25, 0.5, 1, 2, 5, 10, 20, 50) if min(factors) / 2 <= t]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(min([*factors, 1.0]) / 1.6, max([*factors, 1.0]) * 2.2)
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_xlabel("ours / reference (log; right of 1: ours costs more)", fontsize=9)
        ax.set_title("At a glance: cost relative to the reference", fontsize=10)
        ax.grid(axis="x", alpha=0.3, which="both")


def _costs(figures: dict[str, Any]) -> CostPanel | None:
    entries: list[tuple[str, float]] = []
    if "latency" in figures:
        entries.append(
            ("hop latency p50\nvs Celery chain", figures["latency"]["ratio_per_hop"]["median"])
        )
    for key, label in (("workers_1", "1 worker"), ("workers_2", "2 workers")):
        t = figures.get("throughput", {}).get(key)
        if t:
            entries.append((f"time per step, {label}\nvs Celery task", 1 / t["ratio"]))
    if "fanout" in figures:
        entries.append(
            ("fan-out time/event\nvs Celery chord", figures["fanout"]["ratio"]["median"])
        )
    if "inprocess" in figures:
        entries.append(
            ("in-process time/run\nvs upstream", 1 / figures["inprocess"]["ratio"]["median"])
        )
    cost = figures.get("cost", {})
    if cost.get("ours_worker_rss") and cost.get("plain_worker_rss"):
        ours, plain = cost["ours_worker_rss"], cost["plain_worker_rss"]
        entries.append(("worker pool proc RSS\nvs Celery", ours["child_mib"] / plain["child_mib"]))
    peer, lat = figures.get("dbos_peer", {}), figures.get("latency")
    if peer.get("status") == "ok" and lat and "latency_ms_median" in peer.get("metrics", {}):
        entries.append(
            (
                "3-step latency\nvs DBOS",
                lat["ours_p50_ms"]["median"] / peer["metrics"]["latency_ms_median"],
            )
        )
    return CostPanel(entries) if entries else None


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _latency(f: dict[str, Any]) -> Panel:
    return Panel(
        "Latency per step hop (p50 of 3-step run / 3)",
        "ms (lower is better)",
        [
            Bar.of("celery_workflows", f["ours_per_hop_ms"], OURS),
            Bar.of("plain Celery chain", f["plain_per_hop_ms"], REFERENCE),
        ],
        f"ours / plain = {f['ratio_per_hop']['median']:.2f}x",
    )


def _throughput(f: dict[str, Any]) -> Panel:
    bars, notes = [], []
    for key, label in (("workers_1", "1 worker"), ("workers_2", "2 workers")):
        if key in f:
            bars.append(Bar.of(f"ours steps/s\n{label}", f[key]["ours_steps_per_s"], OURS))
            bars.append(Bar.of(f"plain tasks/s\n{label}", f[key]["plain_tasks_per_s"], REFERENCE))
            notes.append(f"{label}: {f[key]['ratio']:.2f}x")
    return Panel(
        f"Throughput, {f['runs_in_flight']} runs in flight",
        "per second (higher is better)",
        bars,
        "ours / plain: " + ", ".join(notes),
    )


def _fanout(f: dict[str, Any]) -> Panel:
    return Panel(
        f"Fan-out/fan-in, {f['events']} events",
        "ms per event (lower is better)",
        [
            Bar.of("celery_workflows", f["ours_ms_per_event"], OURS),
            Bar.of("plain Celery chord", f["chord_ms_per_event"], REFERENCE),
        ],
        f"ours / chord = {f['ratio']['median']:.2f}x",
    )


def _inprocess(f: dict[str, Any]) -> Panel:
    return Panel(
        "In-process, 3-step runs one after another",
        "runs/s (higher is better)",
        [
            Bar.of("celery_workflows\nLocalRuntime", f["ours_runs_per_s"], OURS),
            Bar.of("upstream\nworkflows 2.26.1", f["upstream_runs_per_s"], REFERENCE),
        ],
        f"ours / upstream = {f['ratio']['median']:.2f}x",
    )


def _memory(f: dict[str, Any]) -> Panel | None:
    ours, plain = f.get("ours_worker_rss"), f.get("plain_worker_rss")
    if not (ours and plain):
        return None
    return Panel(
        "Peak RSS of a worker (VmHWM)",
        "MiB (lower is better)",
        [
            Bar.single("ours\nmain", ours["main_mib"], OURS),
            Bar.single("plain\nmain", plain["main_mib"], REFERENCE),
            Bar.single("ours\npool proc", ours["child_mib"], OURS),
            Bar.single("plain\npool proc", plain["child_mib"], REFERENCE),
        ],
        f"pool process: ours / plain = {ours['child_mib'] / plain['child_mib']:.2f}x",
    )


def _database(f: dict[str, Any]) -> Panel | None:
    if "transactions_per_hop" not in f:
        return None
    note = ""
    if "db_bytes_per_run" in f:
        note = f"{f['db_bytes_per_run']['median'] / 1024:.1f} KiB of tables per finished run"
    return Panel(
        "Database work per step hop (ours)",
        "count (lower is better)",
        [
            Bar.of("transactions", f["transactions_per_hop"], OURS),
            Bar.of("statements", f["statements_per_hop"], OURS),
        ],
        note,
    )


def _peer(figures: dict[str, Any]) -> Panel | None:
    peer, lat = figures.get("dbos_peer", {}), figures.get("latency")
    metrics = peer.get("metrics", {})
    if peer.get("status") != "ok" or "latency_ms_median" not in metrics or not lat:
        return None
    m = metrics
    return Panel(
        "3-step run latency vs a durable peer",
        "ms (lower is better)",
        [
            Bar.of("ours on Celery\np50", lat["ours_p50_ms"], OURS),
            Bar(
                "DBOS Transact\nmedian",
                m["latency_ms_median"],
                m["latency_ms_min"],
                m["latency_ms_max"],
                PEER,
            ),
        ],
        f"ours / DBOS = {lat['ours_p50_ms']['median'] / m['latency_ms_median']:.2f}x",
    )


def panels(figures: dict[str, Any]) -> list[Panel | CostPanel]:
    """The panels of the figures present, in reading order (the headline first)."""
    found: list[Panel | CostPanel | None] = [_costs(figures)]
    for name, build in (
        ("latency", _latency),
        ("throughput", _throughput),
        ("fanout", _fanout),
        ("inprocess", _inprocess),
    ):
        if name in figures:
            found.append(build(figures[name]))
    if "cost" in figures:
        found += [_memory(figures["cost"]), _database(figures["cost"])]
    found.append(_peer(figures))
    return [p for p in found if p is not None]
