"""A step outcome that cannot be stored fails the step with the real error, once.

An exception message over ``max_event_bytes`` or a result nested too deep for JSON used
to escape the completion: the delivery stayed running, the body ran again on every
lease expiry and the run ended as "poison". Now such an outcome is a step failure like
any other (the message truncated where needed): retry policies and ``@catch_error``
apply, and the body runs once per attempt. On an embedded SQLite store (no server).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from celery_workflows import Context, Workflow, catch_error, step
from celery_workflows.errors import InvalidMessageError
from celery_workflows.events import StartEvent, StepFailedEvent, StopEvent
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore

LIMIT = 10_000
BODIES: dict[str, int] = {}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    store = SqlRunStore(f"sqlite:///{tmp_path / 'runs.db'}", create_schema=True)
    runtime = LocalRuntime(store)
    runtime.engine.max_event_bytes = LIMIT
    try:
        yield runtime
    finally:
        await store.close()


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


class HugeError(Workflow):
    @step
    async def shout(self, ctx: Context, ev: StartEvent) -> StopEvent:
        BODIES["shout"] = BODIES.get("shout", 0) + 1
        raise ValueError("x" * (5 * LIMIT))


class HugeErrorRetried(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(2)))
    async def shout(self, ctx: Context, ev: StartEvent) -> StopEvent:
        BODIES["retried"] = BODIES.get("retried", 0) + 1
        raise ValueError("x" * (5 * LIMIT))


class HugeErrorCaught(Workflow):
    @step
    async def shout(self, ctx: Context, ev: StartEvent) -> StopEvent:
        raise ValueError("x" * (5 * LIMIT))

    @catch_error(for_steps=["shout"])
    async def rescue(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result=f"rescued {type(ev.exception).__name__}")


class DeepResult(Workflow):
    @step
    async def dig(self, ctx: Context, ev: StartEvent) -> StopEvent:
        BODIES["dig"] = BODIES.get("dig", 0) + 1
        return StopEvent(result=nested(5000))


async def finish(runtime: LocalRuntime, workflow: type[Workflow]) -> Any:
    return await asyncio.wait_for(workflow(runtime=runtime, timeout=30).run(), 20)


async def test_an_exception_too_large_to_store_fails_the_step_truncated(
    runtime: LocalRuntime,
) -> None:
    BODIES.clear()
    with pytest.raises(ValueError) as raised:
        await finish(runtime, HugeError)
    assert len(str(raised.value)) < LIMIT
    assert str(raised.value).startswith("xxx") and "truncated" in str(raised.value)
    assert BODIES["shout"] == 1


async def test_a_retry_policy_applies_to_an_exception_too_large_to_store(
    runtime: LocalRuntime,
) -> None:
    BODIES.clear()
    with pytest.raises(ValueError):
        await finish(runtime, HugeErrorRetried)
    assert BODIES["retried"] == 2


async def test_catch_error_recovers_from_an_exception_too_large_to_store(
    runtime: LocalRuntime,
) -> None:
    assert str(await finish(runtime, HugeErrorCaught)) == "rescued ValueError"


async def test_a_result_nested_too_deep_for_json_fails_the_step_naming_it(
    runtime: LocalRuntime,
) -> None:
    BODIES.clear()
    with pytest.raises(InvalidMessageError) as raised:
        await finish(runtime, DeepResult)
    assert "step 'dig'" in str(raised.value) and "nested" in str(raised.value)
    assert BODIES["dig"] == 1


class NulError(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(2)))
    async def shout(self, ctx: Context, ev: StartEvent) -> StopEvent:
        BODIES["nul"] = BODIES.get("nul", 0) + 1
        raise ValueError("bad\x00byte")


async def test_a_nul_in_an_exception_message_keeps_the_retry_policy_and_the_error_type(
    runtime: LocalRuntime,
) -> None:
    BODIES.clear()
    with pytest.raises(ValueError, match=r"bad\\x00byte"):
        await finish(runtime, NulError)
    assert BODIES["nul"] == 2
