"""Crash tests use the integration fixtures (real workers, Redis, PostgreSQL), defined
once in ``tests/conftest.py`` so that the session's database is one for every test.

The fixtures here put back a service a test stopped or restarted."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from services import postgres, postgres_answers, redis_answers
from workers import wait_until


@pytest.fixture
def services_back() -> Iterator[None]:
    """Whatever the test did to PostgreSQL and Redis, both answer again afterwards."""
    try:
        yield
    finally:
        if not postgres_answers():
            postgres("start")
        wait_until(postgres_answers, 60, "PostgreSQL to accept connections again")
        wait_until(lambda: redis_answers(os.environ["CW_TEST_BROKER"]), 60, "Redis to answer")
