"""A step's last ``edit_state`` commits with the step's end when nothing runs between
(``runtime/deferral.py``): one transaction instead of two, and nothing else changes.

On a SQLite store the transactions are counted; the step reading its own edit, a snapshot
taken inside the step, an await after the edit (the edit commits there, visible to
others), an output that cannot be stored (the edit stays, the body runs once) and a
completion that cannot store what the step left are each checked, in-process.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from celery_workflows import Context, Workflow, step
from celery_workflows.errors import StateValidationError
from celery_workflows.events import Event, StartEvent, StopEvent
from celery_workflows.runtime import completion
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore


class One(Event):
    pass


class Two(Event):
    pass


class Bad(Event):
    x: float


class Linear(Workflow):
    """Three steps, one edit each, each returning right after its edit."""

    @step
    async def first(self, ctx: Context, ev: StartEvent) -> One:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return One()

    @step
    async def second(self, ctx: Context, ev: One) -> Two:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return Two()

    @step
    async def third(self, ctx: Context, ev: Two) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return StopEvent(result=state["n"])


def quiet(runtime: LocalRuntime) -> LocalRuntime:
    """No RUNNING step events, as on Celery by default: their stream write waits for the
    run lock before the step's end, so with them the edit commits on its own."""
    runtime.engine.step_events = False
    return runtime


def sqlite_runtime(tmp_path: Path) -> tuple[LocalRuntime, SqlRunStore, list[str]]:
    """A runtime on a SQLite store, and the list of run-row updates it sends."""
    store = SqlRunStore(f"sqlite:///{tmp_path / 'runs.db'}", create_schema=True)
    updates: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CW_RUNS"):
            updates.append(statement)

    event.listen(store._db.engine, "before_cursor_execute", seen)
    return quiet(LocalRuntime(store)), store, updates


async def test_each_hop_commits_its_edit_with_its_end(tmp_path: Path) -> None:
    runtime, store, updates = sqlite_runtime(tmp_path)
    try:
        handler = Linear(runtime=runtime, timeout=30).run()
        assert await handler == 3
        # One write of the run row per hop: the edited state goes with the end (meta,
        # status, result); an edit committed on its own would make it two per hop.
        assert len(updates) == 3, updates
        assert (await handler.ctx.store.get("n")) == 3
    finally:
        await store.close()


class ReadsAndSnapshots(Workflow):
    """Reads its own edit, and snapshots, before any other await."""

    @step
    async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = 41
        snapshot = ctx.to_dict()
        async with ctx.store.edit_state() as state:
            state["n"] += 1
        return StopEvent(result=(await ctx.store.get("n"), snapshot["state"]))


@pytest.mark.parametrize("on", ["memory", "sqlite"])
async def test_a_step_sees_its_own_edit_before_it_commits(tmp_path: Path, on: str) -> None:
    store: SqlRunStore | None = None
    if on == "memory":
        runtime = quiet(LocalRuntime())
    else:
        runtime, store, _ = sqlite_runtime(tmp_path)
    try:
        n, saved = await ReadsAndSnapshots(runtime=runtime, timeout=30).run()
        assert n == 42
        assert "41" in str(saved["state_data"])  # the held edit's state
    finally:
        if store is not None:
            await store.close()


class EditsThenWaits(Workflow):
    """Edits, then awaits something else: the edit commits at that await."""

    released = asyncio.Event()

    @step
    async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state["n"] = 1
        await asyncio.wait_for(self.released.wait(), 20)
        return StopEvent(result="done")


async def test_an_edit_commits_at_the_next_await(tmp_path: Path) -> None:
    runtime, store, _ = sqlite_runtime(tmp_path)
    EditsThenWaits.released = asyncio.Event()
    try:
        handler = EditsThenWaits(runtime=runtime, timeout=30).run()
        other = SqlRunStore(store._db.url.render_as_string(hide_password=False))
        try:
            # Another store (as another process) sees the edit while the step still runs.
            for _ in range(400):
                run = await other.get_run(handler.run_id)
                if "n" in str(run.state):
                    break
                await asyncio.sleep(0.025)
            assert "n" in str(run.state), run.state
            assert not handler.is_done()
        finally:
            await other.close()
        EditsThenWaits.released.set()
        assert await handler == "done"
    finally:
        await store.close()


class EditsThenFailsToStore(Workflow):
    """Edits, then returns an event that cannot be stored (NaN in JSON)."""

    bodies = 0

    @step
    async def only(self, ctx: Context, ev: StartEvent) -> Bad:
        type(self).bodies += 1
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return Bad(x=math.nan)

    @step
    async def never(self, ev: Bad) -> StopEvent:
        return StopEvent(result="stored")


async def test_an_output_that_cannot_be_stored_keeps_the_edit(tmp_path: Path) -> None:
    runtime, store, _ = sqlite_runtime(tmp_path)
    EditsThenFailsToStore.bodies = 0
    try:
        handler = EditsThenFailsToStore(runtime=runtime, timeout=30).run()
        with pytest.raises(Exception, match="only"):
            await handler
        assert EditsThenFailsToStore.bodies == 1
        assert (await handler.ctx.store.get("n")) == 1
    finally:
        await store.close()


async def test_an_end_refused_after_the_edit_runs_the_body_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses the end's writes (after the edit's were staged in the same
    transaction): both roll back, the body runs again committing its edit at once, and
    the run ends with the edit applied once."""
    runtime, store, _ = sqlite_runtime(tmp_path)
    refusals: list[int] = []
    real_apply = completion.apply

    async def refuse_once(txn: Any, writes: Any) -> None:
        if not refusals:
            refusals.append(1)
            raise StateValidationError("refused by the test")
        await real_apply(txn, writes)

    monkeypatch.setattr(completion, "apply", refuse_once)
    try:
        assert await Linear(runtime=runtime, timeout=30).run() == 3
        assert refusals == [1]
    finally:
        await store.close()


class Killed(BaseException):
    """Stands for the worker dying (not an error a step's failure handling sees)."""


async def test_a_worker_dying_with_the_edit_held_applies_it_once_on_the_next_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DESIGN invariant 8 on the merged path: the edit waits in the end's transaction; a
    death before that commits loses both (the edit is not seen), and the next attempt
    applies the edit once."""
    from celery_workflows.context.state_store import DictState
    from celery_workflows.runtime.engine import Dispatch, Engine
    from celery_workflows.store.memory import InMemoryRunStore

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[Dispatch] = []

        def dispatch(self, items: Any) -> None:
            self.sent.extend(items)

    recorder = Recorder()
    engine = Engine(InMemoryRunStore(), recorder, lease_seconds=0.05)
    binding = engine.register(Linear(timeout=None))
    await engine.start(binding, StartEvent(), run_id="k1", state=DictState(), timeout=None)
    (start,) = recorder.sent
    real_apply = completion.apply

    async def die_once(txn: Any, writes: Any) -> None:
        monkeypatch.setattr(completion, "apply", real_apply)
        raise Killed

    monkeypatch.setattr(completion, "apply", die_once)
    with pytest.raises(Killed):
        await engine.execute(start.delivery_id)
    assert "n" not in (await engine.store.get_run("k1")).state  # rolled back with the end
    await asyncio.sleep(0.1)  # the dead attempt's lease expires
    await engine.execute(start.delivery_id)
    while len(recorder.sent) > 1:
        await engine.execute(recorder.sent.pop().delivery_id)
    run = await engine.store.get_run("k1")
    assert run.status == "completed"
    assert dict(run.state.items()) == {"n": 3}
