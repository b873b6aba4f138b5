"""Restarting the machine's own Redis and PostgreSQL, for crash tests.

Each helper leaves the service as it found it: the same port, bind and settings (read
from the running server), and the fixtures in ``tests/crash/conftest.py`` start what a
failed test left stopped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from workers import wait_until

POSTGRES_CONNINFO = "host=127.0.0.1 user=postgres dbname=postgres"


def postgres(action: str) -> None:
    """``pg_ctlcluster <action>`` on the local cluster (as ``scripts/services`` runs it)."""
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.fail("no local PostgreSQL cluster to restart")
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action]
    subprocess.run(cmd, check=True, timeout=60)


def postgres_answers() -> bool:
    """True when PostgreSQL accepts a connection."""
    try:
        psycopg.connect(POSTGRES_CONNINFO, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def redis_answers(url: str) -> bool:
    """True when the Redis server behind ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def restart_redis(url: str) -> None:
    """Restart the Redis server behind ``url`` with the settings it runs with. It keeps
    nothing on disk (here and on CI), so every message is lost."""
    client = redis.Redis.from_url(url)
    config: dict[str, Any] = client.config_get("*")
    client.close()
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("no redis-server / redis-cli to restart Redis with")
    port = str(config["port"])
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], timeout=30, check=False)
    cmd = [
        "redis-server", "--daemonize", "yes", "--port", port,
        "--bind", *str(config["bind"]).split(),
        "--save", str(config.get("save", "")), "--appendonly", str(config["appendonly"]),
        "--dir", str(config["dir"]), "--logfile", str(config["logfile"]),
    ]  # fmt: skip
    subprocess.run(cmd, timeout=30, check=True)
    wait_until(lambda: redis_answers(url), 30, "Redis to answer again")


def running(p: Any, handlers: list[Any], step: str) -> int:
    """How many of the runs have ``step`` claimed by a worker right now."""
    import asyncio

    async def count() -> int:
        return sum([step in await p.runtime.running_steps(h.run_id) for h in handlers])

    return asyncio.run(count())
