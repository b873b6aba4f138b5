"""Real ``celery worker`` processes for integration and crash tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent


@dataclass
class WorkerGroup:
    """Worker processes of one test, each its own process group (so SIGKILL takes all)."""

    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, name: str, concurrency: int = 2, pool: str = "prefork", queues: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``celery -A cw_proj worker`` as a new process group (``queues``: ``-Q``)."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        cmd = [
            sys.executable, "-m", "celery", "-A", "cw_proj", "worker",
            "--loglevel=INFO", f"--concurrency={concurrency}", "-n", f"{name}@%h",
            f"--pool={pool}", "--without-gossip", "--without-mingle", "--without-heartbeat",
            *(["-Q", queues] if queues else []),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=HERE, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group (main process and pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop every worker: TERM, then KILL what did not exit within 10 s."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def wait_ready(self, proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
        """Wait until the worker ``name`` says it is ready (fail if it exits first)."""
        log = self.logs / f"{name}.log"

        def ready() -> bool:
            return proc.poll() is not None or "ready." in log.read_text(errors="replace")

        wait_until(ready, timeout, f"worker {name} to be ready")
        assert proc.poll() is None, f"worker {name} exited:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of every worker log (for assertion messages)."""
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 50 ms; return the seconds it took, fail after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
