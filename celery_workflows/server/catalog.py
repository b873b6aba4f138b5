"""The served workflows, and runs found by id in their run stores.

Nothing about a run is kept in memory: a handler id is the run id, and every answer is
read from the run store, so any number of server processes serve the same runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from ..errors import InvalidMessageError, RunNotFoundError, WorkflowRuntimeError
from ..events import Event
from ..runtime.base import BaseRuntime
from ..store.base import RunRecord, RunStore, StreamEntry
from .envelopes import envelope, event_registry, handler_data, unreadable_envelope
from .feeds import default_feed
from .hub import ChangeFeed, StreamHub

if TYPE_CHECKING:
    from ..runtime.binding import Binding
    from ..workflow import Workflow

__all__ = ["Catalog", "Decoded", "Served"]


@dataclass(frozen=True)
class Served:
    """A workflow served under ``name``, with the events clients may send it."""

    name: str
    workflow: Workflow
    registry: dict[str, type[Event]]

    def runtime(self) -> BaseRuntime:
        """The runtime its runs go to (the running loop's in-process one by default)."""
        runtime = self.workflow.runtime
        if not isinstance(runtime, BaseRuntime):
            raise TypeError(f"workflow {self.name!r} runs on {runtime!r}, not a runtime's store")
        return runtime

    def binding(self) -> Binding:
        """The runtime's binding of the workflow (its codec decodes stored payloads)."""
        return self.runtime().binding(self.workflow)


@dataclass(frozen=True)
class Decoded:
    """A stream entry ready for the wire: its envelope, and the event if rebuilt."""

    seq: int
    envelope: dict[str, Any]
    event: Event | None


class Catalog:
    """Served workflows by name, their runs by id, and one stream hub per run store."""

    def __init__(self, feed_factory: Callable[[RunStore], ChangeFeed] | None = None) -> None:
        self._served: dict[str, Served] = {}
        self._feed_factory = feed_factory
        self._hubs: dict[tuple[int, int], StreamHub] = {}

    def add(self, name: str, workflow: Workflow, additional: Iterable[type[Event]]) -> None:
        """Serve ``workflow`` as ``name``."""
        if name in self._served:
            raise ValueError(f"a workflow is already served as {name!r}")
        taken = {s.workflow.workflow_name: s.name for s in self._served.values()}
        if workflow.workflow_name in taken:
            raise ValueError(
                f"workflow {workflow.workflow_name!r} is already served as "
                f"{taken[workflow.workflow_name]!r}: its runs could not be told apart"
            )
        workflow.validate()
        registry = event_registry(workflow.events, additional)
        self._served[name] = Served(name, workflow, registry)

    def names(self) -> list[str]:
        """Served names, in registration order."""
        return list(self._served)

    def all(self) -> list[Served]:
        """Every served workflow."""
        return list(self._served.values())

    def get(self, name: str) -> Served:
        """The workflow served as ``name`` (404 if none)."""
        served = self._served.get(name)
        if served is None:
            raise HTTPException(404, "Workflow not found")
        return served

    def by_run(self, run: RunRecord) -> Served | None:
        """The served workflow a run belongs to (None: not one of this server's)."""
        for served in self._served.values():
            if served.workflow.workflow_name == run.workflow_name:
                return served
        return None

    def runtimes(self) -> list[BaseRuntime]:
        """The distinct runtimes of the served workflows."""
        found: dict[int, BaseRuntime] = {}
        for served in self._served.values():
            runtime = served.runtime()
            found.setdefault(id(runtime), runtime)
        return list(found.values())

    async def find(self, run_id: str) -> tuple[Served, RunRecord]:
        """The run ``run_id`` and its workflow, from whichever store holds it (404)."""
        for runtime in self.runtimes():
            try:
                run = await runtime.store.get_run(run_id)
            except RunNotFoundError:
                continue
            served = self.by_run(run)
            if served is not None:
                return served, run
        raise HTTPException(404, "Handler not found")

    def hub(self, runtime: BaseRuntime) -> StreamHub:
        """This process's stream hub for ``runtime``'s store (one per store and loop)."""
        store = runtime.store
        key = (id(store), id(asyncio.get_running_loop()))
        hub = self._hubs.get(key)
        if hub is None or hub.store is not store:
            make_feed = self._feed_factory or default_feed
            feed = make_feed(store)
            hub = self._hubs[key] = StreamHub(store, feed)
        return hub

    def hubs(self) -> list[StreamHub]:
        """Every hub made so far."""
        return list(self._hubs.values())

    async def close(self) -> None:
        """End every open stream."""
        for hub in self._hubs.values():
            await hub.close()
        self._hubs.clear()

    @staticmethod
    def decode(binding: Binding, entry: StreamEntry) -> Decoded:
        """A stored entry as the wire shows it (``seq`` in the protocol's numbering,
        from 0; stores number from 1)."""
        try:
            event = binding.codec.decode_event(entry.event)
        except InvalidMessageError:
            return Decoded(entry.seq - 1, unreadable_envelope(entry.event), None)
        return Decoded(entry.seq - 1, envelope(event), event)

    def handler(self, served: Served, run: RunRecord) -> dict[str, Any]:
        """The handler record of ``run``, with its result envelope once completed."""
        result = None
        if run.status == "completed" and run.result is not None:
            try:
                result = envelope(served.runtime().outcome(served.binding(), run))
            except (InvalidMessageError, WorkflowRuntimeError):
                result = unreadable_envelope(run.result)
        return handler_data(run, served.name, result, served.workflow._timeout)
