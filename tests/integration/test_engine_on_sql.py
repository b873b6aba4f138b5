"""The run lifecycle over the SQL run store (SQLite file and real PostgreSQL).

The same engine as in-process, with JSON payloads: state edits lock the run row, their
journal marks make a re-run of a dead attempt apply each edit once, and bad state is
refused with an error naming run, step and field while the row stays as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from celery_workflows import Context, Workflow, step
from celery_workflows.context.state_store import DictState
from celery_workflows.errors import StateValidationError
from celery_workflows.events import Event, InputRequiredEvent, StartEvent, StopEvent
from celery_workflows.runtime.engine import Dispatch, Engine
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    create_postgres_database: Callable[[], str],
) -> AsyncIterator[SqlRunStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = create_postgres_database()
    store = SqlRunStore(url, create_schema=True)
    try:
        yield store
    finally:
        await store.close()


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Dispatch] = []

    def dispatch(self, items: Any) -> None:
        self.sent.extend(items)


DIE = {"block": True, "bodies": 0}
REACHED: dict[str, asyncio.Event] = {}


class ThreeEdits(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        DIE["bodies"] += 1
        for name in ("a", "b"):
            async with ctx.store.edit_state() as state:
                state[name] = state.get(name, 0) + 1
        if DIE["block"]:
            REACHED["event"].set()
            await asyncio.Event().wait()  # the worker dies here
        await ctx.store.set("c", await ctx.store.get("c", default=0) + 1)
        return StopEvent(result="done")


async def test_a_dead_attempt_rerun_applies_each_edit_exactly_once(sql_store: SqlRunStore) -> None:
    DIE.update(block=True, bodies=0)
    REACHED["event"] = asyncio.Event()
    recorder = Recorder()
    engine = Engine(sql_store, recorder, lease_seconds=0.2)
    binding = engine.register(ThreeEdits(timeout=None))
    await engine.start(binding, StartEvent(), run_id="dead-1", state=DictState(), timeout=None)
    delivery_id = recorder.sent[0].delivery_id
    first = asyncio.create_task(engine.execute(delivery_id))
    await asyncio.wait_for(REACHED["event"].wait(), 10)
    first.cancel()  # edits 0 and 1 committed; the attempt never completes
    await asyncio.sleep(0.4)  # lease expiry
    DIE["block"] = False
    await asyncio.wait_for(engine.execute(delivery_id), 10)
    run = await sql_store.get_run("dead-1")
    assert run.status == "completed"
    assert run.state == {"_data": {"a": 1, "b": 1, "c": 1}}
    assert DIE["bodies"] == 2


class Tick(Event):
    n: int


class Fan(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
        for i in range(int(ev.get("n"))):
            ctx.send_event(Tick(n=i))
        return None

    @step(num_workers=4)
    async def add(self, ctx: Context, ev: Tick) -> StopEvent | None:
        async with ctx.store.edit_state() as state:
            state["total"] = state.get("total", 0) + 1
            done = state["total"] == state.get("expected", 20)
        return StopEvent(result="ok") if done else None


async def test_parallel_steps_edit_one_row_without_losing_an_update(sql_store: SqlRunStore) -> None:
    runtime = LocalRuntime(sql_store)
    ctx: Context[Any] = Context(Fan(timeout=60))
    await ctx.store.set("expected", 20)
    workflow = Fan(timeout=60, runtime=runtime)
    handler = workflow.run(ctx=ctx, n=20)
    assert await asyncio.wait_for(handler, 60) == "ok"
    assert await handler.ctx.store.get("total") == 20


class Typed(BaseModel):
    count: int = 0


class Coerce(Workflow):
    @step
    async def work(self, ctx: Context[Typed], ev: StartEvent) -> StopEvent:
        await ctx.store.set("count", 1)
        await ctx.store.set("count", "not a number")
        return StopEvent(result="unreachable")


async def test_typed_state_that_fails_validation_is_refused_naming_run_step_and_field(
    sql_store: SqlRunStore,
) -> None:
    handler = Coerce(timeout=30, runtime=LocalRuntime(sql_store)).run(run_id="typed-1")
    with pytest.raises(StateValidationError) as info:
        await asyncio.wait_for(handler, 30)
    message = str(info.value)
    assert "run 'typed-1'" in message and "step 'work'" in message and "count" in message
    assert (await handler.ctx.store.get_state()).count == 1


class Opaque:
    pass


class NotJson(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("ok", 1)
        await ctx.store.set("a.b", Opaque())
        return StopEvent(result="unreachable")


async def test_a_value_that_is_not_json_is_refused_naming_its_key_path(
    sql_store: SqlRunStore,
) -> None:
    handler = NotJson(timeout=30, runtime=LocalRuntime(sql_store)).run()
    with pytest.raises(StateValidationError) as info:
        await asyncio.wait_for(handler, 30)
    assert "['a']['b']" in str(info.value) and "Opaque" in str(info.value)
    assert await handler.ctx.store.get("ok") == 1
    assert await handler.ctx.store.get("a", default=None) is None


async def test_an_event_payload_naming_an_unregistered_type_fails_the_run_naming_it(
    sql_store: SqlRunStore,
) -> None:
    from celery_workflows.errors import InvalidMessageError
    from celery_workflows.store.base import NewDelivery

    recorder = Recorder()
    engine = Engine(sql_store, recorder)
    binding = engine.register(ThreeEdits(timeout=None))
    await engine.start(binding, None, run_id="bad-1", state=DictState(), timeout=None)
    forged = {"__is_pydantic": True, "value": {}, "qualified_name": "os.system"}
    async with sql_store.locked("bad-1") as txn:
        txn.add_deliveries([NewDelivery("bad-1:forged", "work", forged)])
    await engine.execute("bad-1:forged")
    run = await sql_store.get_run("bad-1")
    assert run.status == "failed" and run.error is not None
    assert "os.system" in run.error["exception_message"]
    assert "run 'bad-1'" in run.error["exception_message"]
    assert run.error["exception_type"].endswith(InvalidMessageError.__name__)


class Big(Event):
    blob: str


class TooBig(Workflow):
    @step
    async def produce(self, ctx: Context, ev: StartEvent) -> Big:
        await ctx.store.set("before", 1)
        return Big(blob="x" * 5000)

    @step
    async def consume(self, ev: Big) -> StopEvent:
        return StopEvent(result=len(ev.blob))


async def test_an_event_over_the_size_limit_fails_its_step_naming_run_step_and_event(
    sql_store: SqlRunStore,
) -> None:
    from celery_workflows.errors import InvalidMessageError

    runtime = LocalRuntime(sql_store)
    runtime.engine.max_event_bytes = 1000
    handler = TooBig(timeout=30, runtime=runtime).run(run_id="big-1")
    with pytest.raises(InvalidMessageError) as info:
        await asyncio.wait_for(handler, 30)
    message = str(info.value)
    assert "run 'big-1'" in message and "step 'produce'" in message and "event Big" in message
    assert "max_event_bytes" in message
    assert await handler.ctx.store.get("before") == 1


class Answer(Event):
    text: str


class AsksWithABigPrompt(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("asked", 1)
        answer = await ctx.wait_for_event(
            Answer, waiter_event=InputRequiredEvent(prefix="x" * 5000), waiter_id="big"
        )
        return StopEvent(result=answer.text)


async def test_an_oversize_waiter_event_fails_the_step_instead_of_leaving_it_hanging(
    sql_store: SqlRunStore,
) -> None:
    from celery_workflows.errors import InvalidMessageError

    runtime = LocalRuntime(sql_store)
    runtime.engine.max_event_bytes = 1000
    handler = AsksWithABigPrompt(timeout=30, runtime=runtime).run(run_id="big-wait")
    with pytest.raises(InvalidMessageError) as info:
        await asyncio.wait_for(handler, 20)
    message = str(info.value)
    assert "run 'big-wait'" in message and "step 'ask'" in message
    assert "max_event_bytes" in message
    assert (await sql_store.get_run("big-wait")).status == "failed"


class Hello(Event):
    pass


class SaysWhatItGot(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Hello:
        return Hello()

    @step
    async def second(self, ev: Hello) -> StopEvent:
        return StopEvent(result="ok")


async def test_step_state_events_name_the_decoded_input_event(sql_store: SqlRunStore) -> None:
    from celery_workflows.events import StepStateChanged

    handler = SaysWhatItGot(timeout=30, runtime=LocalRuntime(sql_store)).run()
    seen = await asyncio.wait_for(_all_events(handler), 20)
    names = {
        (e.name, e.step_state.value, e.input_event_name, e.output_event_name)
        for e in seen
        if isinstance(e, StepStateChanged)
    }
    assert names == {
        ("first", "running", "StartEvent", None),
        ("first", "not_running", str(StartEvent), str(Hello)),
        ("second", "running", "Hello", None),
        ("second", "not_running", str(Hello), str(StopEvent)),
    }


async def _all_events(handler: Any) -> list[Event]:
    return [event async for event in handler.stream_events(expose_internal=True)]
