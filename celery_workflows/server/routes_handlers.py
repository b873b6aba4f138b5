"""Routes about runs (handlers): read, list, cancel, stream events, send events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, get_args

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import WorkflowRuntimeError
from ..runtime.step_events import request_step_events
from ..store.base import RunQuery, RunRecord, RunStatus
from .catalog import Catalog, Served
from .envelopes import EventParseError, is_internal, is_terminal, parse_event
from .hub import Subscription
from .security import read_json

__all__ = ["handler_routes"]

#: Most handlers ``GET /handlers`` lists (newest first).
MAX_LISTED = 1000
_WIRE_STATUSES = ("running", "completed", "failed", "cancelled")


class EventStreamResponse(StreamingResponse):
    """A stream that ends the moment its client leaves.

    Starlette watches for the disconnect only under ASGI HTTP spec < 2.4 (later servers
    report it on the next write, which on a quiet stream may be a heartbeat away); this
    response always watches, so an idle stream's subscription is dropped at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asgi = {**scope.get("asgi", {}), "spec_version": "2.3"}
        await super().__call__({**scope, "asgi": asgi}, receive, send)


def _flag(request: Request, name: str, default: str) -> bool:
    return request.query_params.get(name, default).lower() == "true"


def _cursor(request: Request, sse: bool) -> int | None:
    """The protocol's ``after_sequence`` (None = "now"); ``Last-Event-ID`` wins in SSE."""
    text = request.query_params.get("after_sequence", "now")
    after: int | None = None
    if text.lower() != "now":
        try:
            after = int(text)
        except ValueError as exc:
            raise HTTPException(400, f"Invalid after_sequence: '{text}'") from exc
    last_id = request.headers.get("last-event-id") if sse else None
    if last_id is not None and last_id.strip().lstrip("-").isdigit():
        after = int(last_id)
    return after


def handler_routes(catalog: Catalog, heartbeat: float | None) -> list[Route]:
    """The ``/handlers`` and ``/events`` routes; SSE streams send a comment every
    ``heartbeat`` seconds of silence (None: never)."""

    async def get_handler(request: Request) -> JSONResponse:
        served, run = await catalog.find(request.path_params["handler_id"])
        data = catalog.handler(served, run)
        status = {"running": 202, "completed": 200}.get(data["status"], 500)
        return JSONResponse(data, status_code=status)

    async def get_result(request: Request) -> JSONResponse:
        # Deprecated upstream (use /handlers/{id}); kept for older clients: ``result`` is
        # the plain StopEvent's result, or a custom stop event's fields.
        response = await get_handler(request)
        data = json.loads(bytes(response.body))
        result = data["result"]
        if result is not None:
            plain = result["qualified_name"] == "workflows.events.StopEvent"
            data["result"] = result["value"].get("result") if plain else result["value"]
        return JSONResponse(data, status_code=response.status_code)

    async def list_handlers(request: Request) -> JSONResponse:
        statuses = _list_param(request, "status")
        names = _list_param(request, "workflow_name")
        found: list[tuple[RunRecord, Served]] = []
        for served in catalog.all():
            if names is None or served.name in names:
                found.extend((run, served) for run in await _runs_of(served, statuses))
        found.sort(key=lambda item: (item[0].created_at, item[0].run_id), reverse=True)
        handlers = [catalog.handler(served, run) for run, served in found[:MAX_LISTED]]
        return JSONResponse({"handlers": handlers})

    async def cancel(request: Request) -> JSONResponse:
        purge = _flag(request, "purge", "false")
        served, run = await catalog.find(request.path_params["handler_id"])
        if run.finished and not purge:
            raise HTTPException(404, "Handler not found")
        if not run.finished:
            await served.runtime().cancel(served.binding(), run.run_id)
        if not purge:
            return JSONResponse({"status": "cancelled"})
        if not await served.runtime().store.delete_run(run.run_id):
            raise HTTPException(404, "Handler not found")
        return JSONResponse({"status": "deleted"})

    async def post_event(request: Request) -> JSONResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not body.get("event"):
            raise HTTPException(400, "Event data is required")
        step = None if body.get("step") is None else str(body["step"])
        served, run = await catalog.find(request.path_params["handler_id"])
        if run.finished:
            raise HTTPException(409, "Workflow already completed")
        try:
            event = parse_event(body["event"], served.registry)
        except EventParseError as exc:
            raise HTTPException(400, str(exc)) from exc
        binding = served.binding()
        try:
            if step is not None:
                binding.check_target(step, event)
            await served.runtime().engine.send_event(binding, run.run_id, event, step)
        except WorkflowRuntimeError as exc:
            raise HTTPException(500, f"Failed to send event: {exc}") from exc
        return JSONResponse({"status": "sent"})

    async def stream(request: Request) -> Response:
        sse = _flag(request, "sse", "true")
        internal = _flag(request, "include_internal", "false")
        qualified = _flag(request, "include_qualified_name", "true")
        after = _cursor(request, sse)
        served, run = await catalog.find(request.path_params["handler_id"])
        store = served.runtime().store
        if internal and not run.finished and not served.runtime().engine.step_events:
            await request_step_events(store, run.run_id)  # the run writes them from now on
        if after is None:  # "now": after whatever the stream holds at this moment
            held = await store.read_stream(run.run_id)
            cursor = held[-1].seq if held else 0
        else:
            cursor = max(after + 1, 0)  # the wire counts from 0, the store from 1
        if run.finished and not await store.read_stream(run.run_id, cursor, limit=1):
            return Response(status_code=204)
        hub = catalog.hub(served.runtime())
        sub = hub.subscribe(run.run_id, cursor)
        lines = _lines(catalog, served, sub, sse=sse, internal=internal, qualified=qualified)

        async def body() -> AsyncIterator[str]:
            try:
                async for line in _with_heartbeat(lines, heartbeat if sse else None):
                    yield line
            finally:
                hub.unsubscribe(sub)  # the client left or the run ended: reader freed

        media = "text/event-stream" if sse else "application/x-ndjson"
        return EventStreamResponse(body(), media_type=media, headers={"Cache-Control": "no-cache"})

    return [
        Route("/handlers", list_handlers, methods=["GET"]),
        Route("/handlers/{handler_id}", get_handler, methods=["GET"]),
        Route("/handlers/{handler_id}/cancel", cancel, methods=["POST"]),
        Route("/results/{handler_id}", get_result, methods=["GET"]),
        Route("/events/{handler_id}", stream, methods=["GET"]),
        Route("/events/{handler_id}", post_event, methods=["POST"]),
    ]


def _list_param(request: Request, name: str) -> list[str] | None:
    values = [v.strip() for v in request.query_params.getlist(name) if v.strip()]
    return values or None


async def _runs_of(served: Served, statuses: list[str] | None) -> list[RunRecord]:
    wanted: list[RunStatus] | None = None
    if statuses is not None:
        wanted = [s for s in get_args(RunStatus) if s in statuses and s in _WIRE_STATUSES]
        if "running" in wanted:
            wanted.append("waiting")  # the protocol has no "waiting": it is running
        if not wanted:
            return []
    store = served.runtime().store
    name = served.workflow.workflow_name
    found: list[RunRecord] = []
    cursor = None
    while len(found) < MAX_LISTED:
        query = RunQuery(statuses=tuple(wanted) if wanted else None, workflow_name=name,
                         limit=200, cursor=cursor)  # fmt: skip
        page = await store.list_runs(query)
        found.extend(page)
        if len(page) < query.limit:
            break
        cursor = (page[-1].created_at, page[-1].run_id)
    return found


async def _lines(
    catalog: Catalog, served: Served, sub: Subscription, *, sse: bool, internal: bool,
    qualified: bool,
) -> AsyncIterator[str]:  # fmt: skip
    binding = served.binding()
    while (batch := await sub.next_batch()) is not None:
        for entry in batch:
            decoded = catalog.decode(binding, entry)
            event = decoded.event
            if internal or event is None or not is_internal(event):
                data: dict[str, Any] = decoded.envelope
                if not qualified:
                    data = {**data, "qualified_name": None}
                payload = json.dumps(data, separators=(",", ":"))
                yield f"id: {decoded.seq}\ndata: {payload}\n\n" if sse else f"{payload}\n"
            if event is not None and is_terminal(event):
                return


async def _with_heartbeat(lines: AsyncIterator[str], every: float | None) -> AsyncIterator[str]:
    """``lines``, with an SSE comment after each ``every`` seconds of silence."""
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(lines))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield ": heartbeat\n\n"
                continue
            try:
                line = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield line
    finally:
        if pending is not None:
            pending.cancel()
