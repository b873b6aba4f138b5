"""The Celery app, the runtime and the example ``report`` workflow.

Workers load this module: ``celery -A celery_workflows.examples.webapp.proj worker``.
The web app imports it too, to start runs and to re-attach to them by id.

Settings come from the environment, so the same module serves a laptop and a cluster:

- ``CELERY_BROKER_URL``: the Celery broker (default ``redis://127.0.0.1:6379/0``).
- ``CELERY_WORKFLOWS_DATABASE_URL``: the run store (PostgreSQL in production; unset means
  a SQLite file in the working directory).
"""

from __future__ import annotations

import asyncio
import os

from celery import Celery

from celery_workflows import CeleryRuntime, Context, Workflow, step
from celery_workflows.events import Event, StartEvent, StopEvent

__all__ = [
    "MAX_DELAY",
    "SECTIONS",
    "Progress",
    "ReportWorkflow",
    "SectionRequested",
    "SectionWritten",
    "app",
    "runtime",
    "workflow",
]

#: The sections every report has; each is written by its own step task, in parallel.
SECTIONS = ("background", "analysis", "outlook")
#: Upper bound of the ``delay`` a caller may ask for, in seconds.
MAX_DELAY = 60.0

app = Celery(
    "celery_workflows_webapp",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
)
runtime = CeleryRuntime(app, database_url=os.environ.get("CELERY_WORKFLOWS_DATABASE_URL"))


class SectionRequested(Event):
    """One section to write."""

    topic: str
    section: str
    delay: float


class SectionWritten(Event):
    """A written section."""

    section: str
    text: str


class Progress(Event):
    """Streamed to the caller each time a section is done."""

    section: str
    done: int
    total: int


class ReportWorkflow(Workflow):
    """Writes the sections of a report in parallel, counting them in shared state.

    Start it with ``topic`` (a string) and, optionally, ``delay``: seconds each section
    takes (default 1.0), long enough to watch the progress stream or to kill a worker
    mid-run and see the run finish anyway.
    """

    @step
    async def plan(self, ctx: Context, ev: StartEvent) -> list[SectionRequested]:
        """Fan out: one event per section, each becomes its own Celery task."""
        topic = str(ev.get("topic", "celery"))
        delay = min(max(float(ev.get("delay", 1.0)), 0.0), MAX_DELAY)
        await ctx.store.set("topic", topic)
        return [SectionRequested(topic=topic, section=name, delay=delay) for name in SECTIONS]

    @step(num_workers=len(SECTIONS))
    async def write_section(self, ctx: Context, ev: SectionRequested) -> SectionWritten:
        """Write one section; count it under the run's row lock; report progress."""
        await asyncio.sleep(ev.delay)  # stands in for real work (an API call, a query)
        text = f"{ev.section.capitalize()} of {ev.topic}."
        async with ctx.store.edit_state() as state:
            state["sections_done"] = state.get("sections_done", 0) + 1
            done = state["sections_done"]
        ctx.write_event_to_stream(Progress(section=ev.section, done=done, total=len(SECTIONS)))
        return SectionWritten(section=ev.section, text=text)

    @step
    async def assemble(self, ctx: Context, evs: list[SectionWritten]) -> StopEvent:
        """Fan in: once every section is written, return the report."""
        by_name = {ev.section: ev.text for ev in evs}
        done = await ctx.store.get("sections_done", default=0)
        return StopEvent(
            result={
                "topic": await ctx.store.get("topic", default=""),
                "sections": [by_name[name] for name in SECTIONS if name in by_name],
                "sections_done": done,
            }
        )


#: Registered with the runtime: its steps are the Celery tasks
#: ``celery_workflows.step:report.plan``, ``...report.write_section``, ``...report.assemble``.
workflow = ReportWorkflow(runtime=runtime, workflow_name="report", timeout=300)
