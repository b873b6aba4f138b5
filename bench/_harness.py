"""What every benchmark figure needs around it: services, scratch databases, the Redis
database, ``celery worker`` process groups, peak RSS and the median/min/max summary.

Everything here waits with a bound and cleans up what it started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

HERE = Path(__file__).parent
ROOT = HERE.parent
ADMIN_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
#: Broker and result backend of every contender: the same Redis database.
BROKER_URL = "redis://127.0.0.1:6379/8"
WORKER_CONCURRENCY = 2


# --- numbers ------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements (the samples kept for the JSON)."""
    if not samples:
        raise ValueError("no samples to summarize")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": list(samples),
    }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.95 for p95) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.01) -> None:
    """Poll ``check`` until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


# --- services -------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(timeout: float = 1800.0) -> Iterator[None]:
    """Hold the machine-wide benchmark lock: two runs would share Redis database 8 and its
    queue (and each other's CPUs). Waits for a running benchmark up to ``timeout`` s."""
    with open(Path(tempfile.gettempdir()) / "cw_bench.lock", "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another benchmark held the lock for {timeout}s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _services_answer() -> bool:
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2).ping()
        with psycopg.connect(ADMIN_CONNINFO, connect_timeout=2):
            pass
    except (redis.RedisError, psycopg.OperationalError):
        return False
    return True


def ensure_services() -> None:
    """Start Redis and PostgreSQL with ``scripts/services`` unless both answer."""
    if _services_answer():
        return
    print("bench: Redis or PostgreSQL not reachable; running scripts/services", flush=True)
    subprocess.run(["bash", str(ROOT / "scripts" / "services")], check=True, timeout=900)
    if not _services_answer():
        raise RuntimeError("Redis/PostgreSQL still unreachable after scripts/services")


def flush_redis() -> None:
    """Empty the benchmark's Redis database (broker queues and results)."""
    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


@contextlib.contextmanager
def scratch_database(label: str) -> Iterator[tuple[str, str]]:
    """A fresh database ``cw_bench_<label>_<hex>``: (name, SQLAlchemy URL); dropped after."""
    name = f"cw_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def conninfo(database: str) -> str:
    """libpq connection string of a local database."""
    return f"host=127.0.0.1 port=5432 user=postgres dbname={database}"


def run_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """The run store's tables (``cw_*`` without the migration version table)."""
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename LIKE 'cw\\_%' AND tablename <> 'cw_alembic_version'"
    ).fetchall()
    return sorted(r[0] for r in rows)


def run_tables_bytes(conn: psycopg.Connection[Any]) -> int:
    """pg_total_relation_size summed over the run store's tables (heap, TOAST, indexes)."""
    total = 0
    for table in run_tables(conn):
        total += conn.execute("SELECT pg_total_relation_size(%s::regclass)", [table]).fetchone()[0]
    return total


def truncate_runs(conn: psycopg.Connection[Any]) -> None:
    """Empty the run store's tables (between repeats: every repeat starts alike)."""
    tables = run_tables(conn)
    if tables:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(f"TRUNCATE {', '.join(tables)}")


# --- worker processes -------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set, KiB) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (a prefork worker's pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class WorkerGroup:
    """``celery worker`` processes (prefork, same concurrency), each its own process group."""

    app_module: str
    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, count: int, timeout: float = 60.0) -> None:
        """Start ``count`` workers and wait until each answers a control ping."""
        names = []
        for i in range(count):
            name = f"{self.app_module}{i}-{uuid.uuid4().hex[:6]}@bench"
            names.append(name)
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child
            cmd = [
                sys.executable, "-m", "celery", "-A", self.app_module, "worker",
                "--pool=prefork", f"--concurrency={WORKER_CONCURRENCY}", "-n", name,
                "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                "--without-heartbeat",
            ]  # fmt: skip
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=HERE,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        self._wait_ready(names, timeout)

    def _wait_ready(self, names: list[str], timeout: float) -> None:
        from celery import Celery

        app = Celery(broker=BROKER_URL)
        ready: set[str] = set()
        deadline = time.monotonic() + timeout
        try:
            while ready != set(names):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers not ready after {timeout}s: {self.log_tail()}")
                if any(p.poll() is not None for p in self.procs):
                    raise RuntimeError(f"a worker exited at start: {self.log_tail()}")
                for reply in app.control.ping(destination=names, timeout=0.5):
                    ready.update(reply)
        finally:
            app.close()

    def pids(self) -> list[int]:
        """Main pids of the workers."""
        return [p.pid for p in self.procs]

    def peak_rss(self) -> dict[str, float]:
        """Peak RSS (MiB) of the worker main processes and of their pool processes."""
        mains = [peak_rss_kib(pid) or 0 for pid in self.pids()]
        children = [peak_rss_kib(c) or 0 for pid in self.pids() for c in children_of(pid)]
        return {
            "main_mib": max(mains) / 1024,
            "child_mib": max(children, default=0) / 1024,
            "total_mib": (sum(mains) + sum(children)) / 1024 / max(1, len(mains)),
        }

    def stop(self) -> None:
        """TERM every worker's group, KILL what did not exit within 15 s."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def log_tail(self, lines: int = 20) -> str:
        """The end of every worker log of this group."""
        out = []
        for path in sorted(self.log_dir.glob(f"{self.app_module}*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)


@contextlib.contextmanager
def workers(
    app_module: str, count: int, env: dict[str, str], log_dir: Path
) -> Iterator[WorkerGroup]:
    """``count`` ready workers of ``app_module`` for the block; stopped after it."""
    group = WorkerGroup(app_module, env, log_dir)
    try:
        group.start(count)
        yield group
    finally:
        group.stop()
