"""Samples of the "durable workflows" notebook, seed 004.

The notebook's ``!pip install llama-index-workflows`` cell is not code and is left out.
Cell outputs shown by the notebook are asserted through ``capsys``.
"""

import pathlib

import pytest


async def test_instance_variables_persist_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from celery_workflows import Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        def __init__(self, *args, **kwargs):
            self.counter = 0
            super().__init__(*args, **kwargs)

        @step
        def count(self, ev: StartEvent) -> StopEvent:
            self.counter += 1
            return StopEvent(result=f"The step ran {self.counter} times")

    w = MyWorkflow()
    for _ in range(3):
        print(await w.run())

    assert capsys.readouterr().out == (
        "The step ran 1 times\nThe step ran 2 times\nThe step ran 3 times\n"
    )


async def test_context_store_carries_the_counter_to_the_next_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from celery_workflows import Context, Workflow, step
    from celery_workflows.events import StartEvent, StopEvent

    class MyWorkflow(Workflow):
        @step
        async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                counter = state.get("counter", 1)
                retval = StopEvent(result=f"The step ran {counter} times")
                state["counter"] = counter + 1
            return retval

    w = MyWorkflow()
    handler = w.run()
    print(await handler)

    w = MyWorkflow()
    handler = w.run(ctx=handler.ctx)
    print(await handler)

    assert capsys.readouterr().out == "The step ran 1 times\nThe step ran 2 times\n"


async def test_checkpoint_in_sqlite_restores_the_context_in_a_new_workflow(
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # celery_workflows only: the step calls ``ctx.to_dict()``, an extension of ours.
    # Upstream raises ContextStateError there ("to_dict is only available from handler
    # code, not from within steps."), so the notebook's first run fails on upstream.
    # "mydb.db" is created in a temporary directory.
    monkeypatch.chdir(tmp_path)

    import json
    import sqlite3
    from typing import Annotated

    from celery_workflows import Context, Workflow, step
    from celery_workflows.context import JsonSerializer
    from celery_workflows.events import StartEvent, StopEvent
    from celery_workflows.resource import Resource

    def get_db() -> sqlite3.Connection:
        return sqlite3.connect("mydb.db")

    class MyWorkflow(Workflow):
        @step
        async def count(
            self,
            ctx: Context,
            ev: StartEvent,
            db: Annotated[sqlite3.Connection, Resource(get_db)],
        ) -> StopEvent:
            async with ctx.store.edit_state() as state:
                counter = state.get("counter", 1)
                retval = StopEvent(result=f"The step ran {counter} times")
                state["counter"] = counter + 1

            cursor = db.cursor()
            ctx_dict = ctx.to_dict(serializer=JsonSerializer())
            cursor.execute(
                "INSERT OR REPLACE INTO state VALUES (?, ?)",
                ("last_ctx", json.dumps(ctx_dict)),
            )
            db.commit()

            return retval

    # Create a simple key-value table
    db = get_db()
    db.cursor().execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")
    db.commit()

    w = MyWorkflow()
    print(await w.run())

    # State is stored in a DB now, we could restart the process here...

    w = MyWorkflow()
    cursor = db.cursor()
    cursor.execute("SELECT value FROM state WHERE key=?", ("last_ctx",))
    ctx_json = cursor.fetchone()[0]
    restored_ctx = Context.from_dict(w, json.loads(ctx_json), serializer=JsonSerializer())
    print(await w.run(ctx=restored_ctx))

    assert capsys.readouterr().out == "The step ran 1 times\nThe step ran 2 times\n"
