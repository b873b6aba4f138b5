"""Bad input at the runtime: ``Workflow.run()`` with the default runtime, in-process
(in-memory store) and on the embedded SQLite store.

A run id started again must mean the same start on every store. The JSON rules (no NaN
or infinity, no NUL character, state under ``max_state_bytes``) hold where runs are kept
as JSON; in-process, the in-memory store keeps live objects as upstream does, so nothing
is lost there and nothing is refused.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embedded import embedded_sqlite_default

from celery_workflows import Context, Workflow, catch_error, step
from celery_workflows.errors import InvalidMessageError, RunConflictError, StateValidationError
from celery_workflows.events import Event, StartEvent, StepFailedEvent, StopEvent
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed

WAIT = 30.0


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test on the default runtime over each store (SQLite: max 2000 bytes)."""
    if request.param == "memory":
        yield "memory"
        return
    with embedded_sqlite_default(tmp_path, max_state_bytes=2000):
        yield "sqlite"


class Echo(Workflow):
    @step
    async def echo(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return StopEvent(result=ev.get("x"))


class OtherEcho(Workflow):
    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="other")


# --- item: the same run id, started again -----------------------------------------------


async def test_the_same_run_id_with_other_start_arguments_raises_conflict(store_kind: str) -> None:
    workflow = Echo(timeout=WAIT)
    first = workflow.run(run_id="order-1", x=1)
    with pytest.raises(RunConflictError) as raised:
        workflow.run(run_id="order-1", x=2)
    assert "run 'order-1'" in str(raised.value) and "start event" in str(raised.value)
    assert await asyncio.wait_for(first, WAIT) == 1
    assert await first.ctx.store.get("n") == 1


async def test_the_same_run_id_with_another_workflow_raises_conflict(store_kind: str) -> None:
    first = Echo(timeout=WAIT).run(run_id="order-2", x=1)
    with pytest.raises(RunConflictError, match=r"run 'order-2'.*\.Echo'.*\.OtherEcho'"):
        OtherEcho(timeout=WAIT).run(run_id="order-2", x=1)
    assert await asyncio.wait_for(first, WAIT) == 1


async def test_the_same_run_id_with_the_same_start_is_one_run(store_kind: str) -> None:
    workflow = Echo(timeout=WAIT)
    first = workflow.run(run_id="order-3", x=1)
    second = workflow.run(run_id="order-3", start_event=StartEvent(x=1))
    assert first.run_id == second.run_id == "order-3"
    assert await asyncio.wait_for(first, WAIT) == 1
    assert await asyncio.wait_for(second, WAIT) == 1
    assert await first.ctx.store.get("n") == 1


async def test_starting_a_finished_run_again_does_not_hold_a_concurrency_slot(
    store_kind: str,
) -> None:
    workflow = Echo(timeout=WAIT, num_concurrent_runs=1)
    assert await asyncio.wait_for(workflow.run(run_id="once", x=1), WAIT) == 1
    assert await asyncio.wait_for(workflow.run(run_id="once", x=1), WAIT) == 1
    assert await asyncio.wait_for(workflow.run(run_id="next", x=2), WAIT) == 2


# --- item: NaN and infinity -------------------------------------------------------------


class Data(Event):
    numbers: dict[str, Any]


class EmitsInfinity(Workflow):
    @step
    async def make(self, ev: StartEvent) -> Data:
        return Data(numbers={"a": [1.0, float("inf")]})

    @step
    async def use(self, ev: Data) -> StopEvent:
        return StopEvent(result=ev.numbers["a"][1])


async def test_nan_in_start_arguments_is_refused_naming_run_step_and_field(
    store_kind: str,
) -> None:
    if store_kind == "memory":
        result = await asyncio.wait_for(Echo(timeout=WAIT).run(run_id="nan-1", x=math.nan), WAIT)
        assert math.isnan(result)
        return
    with pytest.raises(InvalidMessageError) as raised:
        Echo(timeout=WAIT).run(run_id="nan-1", x=math.nan)
    message = str(raised.value)
    assert "run 'nan-1'" in message and "step 'echo'" in message
    assert "start event" in message and "field x" in message and "nan" in message


async def test_infinity_in_an_event_fails_its_step_naming_run_step_and_field(
    store_kind: str,
) -> None:
    handler = EmitsInfinity(timeout=WAIT).run(run_id="inf-1")
    if store_kind == "memory":
        assert await asyncio.wait_for(handler, WAIT) == math.inf
        return
    with pytest.raises(InvalidMessageError) as raised:
        await asyncio.wait_for(handler, WAIT)
    message = str(raised.value)
    assert "run 'inf-1'" in message and "step 'make'" in message
    assert "event Data field numbers['a'][1]" in message and "inf" in message


# --- item: NUL characters ---------------------------------------------------------------


class Text(Event):
    body: str


class WritesNul(Workflow):
    @step
    async def write(self, ctx: Context, ev: StartEvent) -> Text:
        if ev.get("in_state"):
            async with ctx.store.edit_state() as state:
                state["notes"] = {"text": "a\x00b"}
        return Text(body="c\x00d")

    @step
    async def read(self, ctx: Context, ev: Text) -> StopEvent:
        return StopEvent(result=ev.body)


async def test_a_nul_character_in_state_fails_the_step_naming_run_step_and_field(
    store_kind: str,
) -> None:
    handler = WritesNul(timeout=WAIT).run(run_id="nul-1", in_state=True)
    if store_kind == "memory":
        assert await asyncio.wait_for(handler, WAIT) == "c\x00d"
        assert await handler.ctx.store.get("notes.text") == "a\x00b"
        return
    with pytest.raises(StateValidationError) as raised:
        await asyncio.wait_for(handler, WAIT)
    message = str(raised.value)
    assert "run 'nul-1'" in message and "step 'write'" in message
    assert "state['notes']['text']" in message and "NUL" in message


async def test_a_nul_character_in_an_event_fails_the_step_naming_run_step_and_field(
    store_kind: str,
) -> None:
    handler = WritesNul(timeout=WAIT).run(run_id="nul-2")
    if store_kind == "memory":
        assert await asyncio.wait_for(handler, WAIT) == "c\x00d"
        return
    with pytest.raises(InvalidMessageError) as raised:
        await asyncio.wait_for(handler, WAIT)
    message = str(raised.value)
    assert "run 'nul-2'" in message and "step 'write'" in message
    assert "event Text field body" in message and "NUL" in message


# --- item: the state size limit ---------------------------------------------------------

ATTEMPTS = {"grow": 0}


class Grows(Workflow):
    @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(2)))
    async def grow(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ATTEMPTS["grow"] += 1
        await ctx.store.set("small", 1)
        async with ctx.store.edit_state() as state:
            state["blob"] = "x" * 5000
        return StopEvent(result="grown")

    @catch_error
    async def recover(self, ctx: Context, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result=f"recovered after {ev.attempts}: {ev.exception}")


async def test_an_edit_over_max_state_bytes_fails_the_step_with_retries_and_catch_error(
    store_kind: str,
) -> None:
    ATTEMPTS["grow"] = 0
    handler = Grows(timeout=WAIT).run(run_id="big-1")
    result = await asyncio.wait_for(handler, WAIT)
    if store_kind == "memory":
        assert (result, ATTEMPTS["grow"]) == ("grown", 1)
        return
    assert ATTEMPTS["grow"] == 2
    assert result.startswith("recovered after 2: ")
    assert "run 'big-1'" in result and "step 'grow'" in result
    assert "max_state_bytes" in result and "2000" in result
    assert await handler.ctx.store.get("small") == 1
    assert await handler.ctx.store.get("blob", default=None) is None
