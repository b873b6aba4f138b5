"""Routes about workflows: list them, describe them, start runs."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import InvalidMessageError, RunConflictError, StateValidationError
from ..events import StartEvent
from ..runtime.local import LocalRuntime
from .catalog import Catalog, Served
from .envelopes import EventParseError, is_terminal, parse_event
from .graph import workflow_graph
from .security import read_json

__all__ = ["HANDLER_ID", "workflow_routes"]

#: What a client-chosen handler id may look like (generated ones are 32 hex digits).
HANDLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def workflow_routes(catalog: Catalog) -> list[Route]:
    """The ``/workflows`` routes."""

    async def list_workflows(request: Request) -> JSONResponse:
        return JSONResponse({"workflows": catalog.names()})

    async def schema(request: Request) -> JSONResponse:
        workflow = catalog.get(request.path_params["name"]).workflow
        return JSONResponse(
            {
                "start": workflow.start_event_class.model_json_schema(),
                "stop": workflow.stop_event_class.model_json_schema(),
            }
        )

    async def events(request: Request) -> JSONResponse:
        served = catalog.get(request.path_params["name"])
        return JSONResponse({"events": [e.model_json_schema() for e in served.registry.values()]})

    async def representation(request: Request) -> JSONResponse:
        served = catalog.get(request.path_params["name"])
        return JSONResponse({"graph": workflow_graph(served.workflow)})

    async def run_nowait(request: Request) -> JSONResponse:
        served, run_id = await _start(catalog, request)
        _, run = await catalog.find(run_id)
        return JSONResponse(catalog.handler(served, run))

    async def run(request: Request) -> JSONResponse:
        served, run_id = await _start(catalog, request)
        await _wait_for_end(catalog, served, run_id)
        _, record = await catalog.find(run_id)
        status = 200 if record.status == "completed" else 500
        return JSONResponse(catalog.handler(served, record), status_code=status)

    return [
        Route("/workflows", list_workflows, methods=["GET"]),
        Route("/workflows/{name}/run", run, methods=["POST"]),
        Route("/workflows/{name}/run-nowait", run_nowait, methods=["POST"]),
        Route("/workflows/{name}/schema", schema, methods=["GET"]),
        Route("/workflows/{name}/events", events, methods=["GET"]),
        Route("/workflows/{name}/representation", representation, methods=["GET"]),
    ]


def _start_event(served: Served, body: dict[str, Any]) -> StartEvent:
    data = body.get("start_event", body.get("kwargs") or {})
    workflow = served.workflow
    try:
        event = parse_event(data or {}, served.registry, explicit=workflow.start_event_class)
    except EventParseError as exc:
        raise HTTPException(400, f"Validation error for 'start_event': {exc}") from exc
    if not isinstance(event, workflow.start_event_class):
        raise HTTPException(
            400, f"Start event must be an instance of {workflow.start_event_class.__name__}"
        )
    return event


async def _start(catalog: Catalog, request: Request) -> tuple[Served, str]:
    """Start a run from the request; its id (the handler id) is returned at once."""
    served = catalog.get(request.path_params["name"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    if body.get("context"):
        raise HTTPException(400, "Context API is disabled: a run cannot start from a context")
    event = _start_event(served, body)
    handler_id = body.get("handler_id")
    if handler_id is not None:
        if not isinstance(handler_id, str) or not HANDLER_ID.fullmatch(handler_id):
            raise HTTPException(400, "handler_id: 1 to 128 letters, digits or _.:-")
        await _refuse_existing(served, handler_id)
    runtime = served.runtime()
    try:
        if isinstance(runtime, LocalRuntime):
            # The in-process runtime runs steps in this loop: start it here.
            handler = served.workflow.run(start_event=event, run_id=handler_id)
        else:
            # A remote runtime's start is a database write and a publish: off the loop.
            handler = await asyncio.to_thread(
                served.workflow.run, start_event=event, run_id=handler_id
            )
    except RunConflictError as exc:
        raise HTTPException(409, f"Handler {handler_id!r} already exists") from exc
    except (InvalidMessageError, StateValidationError) as exc:
        raise HTTPException(400, f"Error running workflow: {exc}") from exc
    return served, handler.run_id


async def _refuse_existing(served: Served, handler_id: str) -> None:
    try:
        run = await served.runtime().store.get_run(handler_id)
    except KeyError:  # RunNotFoundError: the id is free
        return
    if not run.finished:
        raise HTTPException(409, f"Handler {handler_id!r} is already running")
    raise HTTPException(409, f"Handler {handler_id!r} already exists and has finished")


async def _wait_for_end(catalog: Catalog, served: Served, run_id: str) -> None:
    """Wait for the run's final stream entry through the process's hub (no polling)."""
    hub = catalog.hub(served.runtime())
    binding = served.binding()
    sub = hub.subscribe(run_id, 0)
    try:
        while (batch := await sub.next_batch()) is not None:
            for entry in batch:
                event = catalog.decode(binding, entry).event
                if event is not None and is_terminal(event):
                    return
    finally:
        hub.unsubscribe(sub)
