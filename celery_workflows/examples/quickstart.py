"""Quickstart: a fan-out workflow with shared state and streamed progress.

Run it with ``python -m celery_workflows.examples.quickstart [DATABASE_URL]``. It needs
no servers: the run is stored in a SQLite file (``celery_workflows_quickstart.db`` in the
working directory by default) and executes in this process, through the same run
lifecycle and the same SQL run store the Celery runtime uses.
"""

from __future__ import annotations

import asyncio
import sys

from celery_workflows import Context, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore

DEFAULT_DATABASE_URL = "sqlite:///celery_workflows_quickstart.db"


class Chunk(Event):
    """One piece of work."""

    text: str


class Counted(Event):
    """The result of one piece of work."""

    words: int


class Progress(Event):
    """Streamed to the caller while the run goes on."""

    message: str


class WordCount(Workflow):
    """Splits a text, counts words of each chunk in parallel, sums them in shared state."""

    @step
    async def split(self, ev: StartEvent) -> list[Chunk]:
        lines: list[str] = ev.get("lines", [])
        return [Chunk(text=line) for line in lines]

    @step(num_workers=4)
    async def count(self, ctx: Context, ev: Chunk) -> Counted:
        words = len(ev.text.split())
        async with ctx.store.edit_state() as state:
            state["total"] = state.get("total", 0) + words
        ctx.write_event_to_stream(Progress(message=f"counted {words} words"))
        return Counted(words=words)

    @step
    async def total(self, ctx: Context, evs: list[Counted]) -> StopEvent:
        total = await ctx.store.get("total", default=0)
        return StopEvent(result={"chunks": len(evs), "words": total})


async def main(database_url: str = DEFAULT_DATABASE_URL) -> None:
    """Run the workflow once on the embedded store and print its stream and result."""
    store = SqlRunStore(database_url, create_schema=True)
    try:
        workflow = WordCount(timeout=30, runtime=LocalRuntime(store))
        handler = workflow.run(lines=["the quick brown fox", "jumps over", "the lazy dog"])
        print(f"run {handler.run_id} started ({store.url})")
        async for event in handler.stream_events():
            if isinstance(event, Progress):
                print("progress:", event.message)
        print("result:", await handler)
        print("state:", await handler.ctx.store.get("total"))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
