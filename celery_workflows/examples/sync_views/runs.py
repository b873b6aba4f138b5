"""What a sync view does with a run, framework aside: start it, look it up by id.

A web request must not wait for a workflow: it starts the run (one database write and
one message; the steps run on Celery workers) and answers with the run id. Any later
request, served by any process, re-attaches with ``runtime.get_handler(run_id)``.
"""

from __future__ import annotations

from typing import Any

from celery_workflows import Workflow
from celery_workflows.errors import RunNotFoundError, WorkflowRuntimeError
from celery_workflows.runtime.base import BaseRuntime

__all__ = ["describe_run", "start_run"]


def start_run(workflow: Workflow, **start_kwargs: Any) -> str:
    """Start a run of ``workflow`` from sync code and return its id at once."""
    handler = workflow.run(**start_kwargs)
    return handler.run_id


def describe_run(runtime: BaseRuntime, run_id: str) -> dict[str, Any] | None:
    """The run as a JSON-ready dict: ``status`` (``running``, ``waiting``, ``completed``,
    ``failed``, ``cancelled``), and its ``result`` or ``error`` once it ended. None if no
    run has that id (a view answers 404)."""
    try:
        handler = runtime.get_handler(run_id)
    except RunNotFoundError:
        return None
    status = runtime.get_run(run_id).status
    body: dict[str, Any] = {"run_id": run_id, "status": status}
    if status in ("running", "waiting"):
        return body
    try:
        # The run ended: its result is read from the run row, nothing is awaited.
        body["result"] = handler.result(timeout=10)
    except WorkflowRuntimeError as exc:  # a failure, a timeout or a cancellation
        body["error"] = str(exc) or type(exc).__name__
    except Exception as exc:  # the exception the step raised, rebuilt
        body["error"] = f"{type(exc).__name__}: {exc}"
    return body
