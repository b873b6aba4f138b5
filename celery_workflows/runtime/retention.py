"""What the in-process runtime may forget, so a long-lived caller does not grow.

A process that starts runs in-process for ever (a web app) would keep every run in the
in-memory store, and the binding of each workflow instance it ever ran. Neither is
needed once a run ended and nobody can reach it any more:

- a finished run is released by the in-memory store once ``keep`` newer runs finished:
  from then on its handlers and contexts hold it (the store's row is pinned to their
  port), and it is freed with the last of them;
- a workflow's binding is let go when its last unfinished run ends; the runtime finds
  it again from the workflow instance while that instance is alive (``get_handler``).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workflow import Workflow

#: Finished runs the in-memory store keeps even when nothing refers to them any more,
#: so ``runtime.get_handler(run_id)`` of a recent run keeps working.
DEFAULT_KEEP_FINISHED = 1000


class FinishedRuns:
    """Finished runs in the order they ended: the newest ``keep`` stay in the store."""

    def __init__(self, keep: int = DEFAULT_KEEP_FINISHED) -> None:
        self.keep = keep
        self._finished: OrderedDict[str, None] = OrderedDict()

    def finished(self, run_id: str) -> list[str]:
        """Record that ``run_id`` ended; return the runs to release from the store now."""
        self._finished[run_id] = None
        self._finished.move_to_end(run_id)
        doomed: list[str] = []
        while len(self._finished) > self.keep:
            doomed.append(self._finished.popitem(last=False)[0])
        return doomed

    def __len__(self) -> int:
        return len(self._finished)


class IdleWorkflows:
    """Workflows with no unfinished run here, held weakly by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, weakref.ref[Workflow]] = {}

    def put(self, workflow: Workflow) -> None:
        """Remember ``workflow`` without keeping it alive."""
        self._by_name[workflow.workflow_name] = weakref.ref(workflow)

    def get(self, workflow_name: str) -> Workflow | None:
        """The idle workflow of that name, if it is still alive."""
        ref = self._by_name.get(workflow_name)
        workflow = ref() if ref is not None else None
        if ref is not None and workflow is None:
            del self._by_name[workflow_name]
        return workflow
