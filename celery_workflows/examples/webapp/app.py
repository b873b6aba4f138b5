"""A tiny web front end for workflow runs, on the standard library's HTTP server.

Routes (JSON in, JSON out):

- ``POST /runs``: the body (a JSON object) becomes the run's start arguments; answers
  ``202 {"run_id": ...}`` at once, the run goes on in the Celery workers. A ``run_id`` in
  the body makes the start idempotent: posting it again with the same arguments attaches
  to the same run; with other arguments the answer is ``409``.
- ``GET /runs/<id>``: ``{"run_id", "status"}``, plus ``result`` once completed or
  ``error`` once failed or cancelled.
- ``GET /runs/<id>/events``: Server-Sent Events, one ``data: {"type": ..., "data": ...}``
  message per event the run writes to its stream, until its StopEvent.
- ``POST /runs/<id>/cancel``: cancel the run.
- ``GET /healthz``: ``{"status": "ok"}`` while the process serves.

Run it with ``python -m celery_workflows.examples.webapp.app --host 0.0.0.0 --port 8000``.

:class:`RunsApi` holds every decision (routing, status codes, JSON, SSE framing) and talks
to the runtime only through the small protocols below, so it is tested with a fake
runtime and no server; :class:`RequestHandler` only moves bytes between it and a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote, urlsplit

from pydantic_core import to_jsonable_python

from celery_workflows.errors import (
    InvalidMessageError,
    RunConflictError,
    RunNotFoundError,
    StateValidationError,
    StoreUnavailableError,
    WorkflowRuntimeError,
    WorkflowValidationError,
)
from celery_workflows.events import Event, StopEvent

__all__ = [
    "EventStream",
    "HttpError",
    "RequestHandler",
    "Response",
    "RunsApi",
    "content_length",
    "event_payload",
    "main",
    "make_server",
    "sse_message",
]

log = logging.getLogger("celery_workflows.examples.webapp")

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1 << 20
#: Start arguments a client may not pass: they are ``Workflow.run()`` parameters, not data.
RESERVED_START_ARGS = frozenset({"ctx", "start_event"})
#: What a run id may look like (generated ids are 32 hex digits).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
#: SSE id of the final event; a client reconnecting with it is told to stop (204).
FINAL_EVENT_ID = "end"
#: An SSE comment: keeps proxies from closing a quiet stream, and notices a gone client.
KEEPALIVE = b": keep-alive\n\n"
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
JSON_TYPE = "application/json"


# --- what the app needs from the runtime (CeleryRuntime in production, a fake in tests) ---


class RunView(Protocol):
    """The committed state of a run (``runtime.get_run(run_id)``)."""

    @property
    def status(self) -> str:
        """running, waiting, completed, failed or cancelled."""
        ...

    @property
    def error(self) -> Mapping[str, Any] | None:
        """What a failed or cancelled run ended with."""
        ...


class RunHandle(Protocol):
    """A handle on one run (``WorkflowHandler``)."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run finishes and return its result."""
        ...

    def stream_events(self) -> AsyncIterator[Event]:
        """The run's streamed events, ending with its StopEvent."""
        ...

    def cancel_run(self) -> Awaitable[None]:
        """Cancel the run."""
        ...


class Launcher(Protocol):
    """What starts runs (a ``Workflow``)."""

    def run(self, **kwargs: Any) -> RunHandle:
        """Start a run with ``kwargs`` as its start event's fields; return at once."""
        ...


class Runtime(Protocol):
    """What finds runs by id, from any process (a ``CeleryRuntime``)."""

    def get_run(self, run_id: str) -> RunView:
        """The committed run; raises RunNotFoundError for an unknown id."""
        ...

    def get_handler(self, run_id: str) -> RunHandle:
        """A handle on an existing run."""
        ...


# --- answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer."""

    status: HTTPStatus
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(
        cls, status: HTTPStatus, payload: Any, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        """``payload`` as a JSON body (values JSON cannot hold are written as strings)."""
        body = json.dumps(to_jsonable_python(payload, fallback=str)).encode() + b"\n"
        return cls(status, body, (("Content-Type", JSON_TYPE), *headers))

    @classmethod
    def error(
        cls,
        status: HTTPStatus,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> Response:
        """A JSON error: ``{"error": message, ...extra}``."""
        return cls.json(status, {"error": message, **extra}, headers)

    @property
    def payload(self) -> Any:
        """The decoded JSON body (for tests and logs)."""
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class EventStream:
    """An answer that streams a run's events as Server-Sent Events.

    ``skip`` is how many events the client already has (from its ``Last-Event-ID``).
    """

    run_id: str
    skip: int = 0


class HttpError(Exception):
    """Stops handling a request with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status.phrase)
        self.response = response


def content_length(value: str | None, limit: int = MAX_BODY_BYTES) -> int:
    """The body size a ``Content-Length`` header announces (HttpError if unusable)."""
    if value is None or not value.strip():
        return 0
    if not value.strip().isdigit():
        raise HttpError(Response.error(HTTPStatus.BAD_REQUEST, f"bad Content-Length {value!r}"))
    length = int(value)
    if length > limit:
        message = f"request body of {length} bytes is over the limit of {limit} bytes"
        raise HttpError(Response.error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message))
    return length


def event_payload(event: Event) -> dict[str, Any]:
    """``{"type": <class name>, "data": <fields>}``; extra fields are merged into data."""
    dumped = to_jsonable_python(event, fallback=str)
    fields: dict[str, Any] = dict(dumped) if isinstance(dumped, dict) else {}
    extra = fields.pop("_data", None)
    data = {**extra, **fields} if isinstance(extra, dict) else fields
    return {"type": type(event).__name__, "data": data}


def sse_message(event: Event, event_id: str) -> bytes:
    """One Server-Sent Events message: an ``id:`` line, one ``data:`` line, a blank line."""
    # json.dumps escapes newlines, so the payload is always a single data line.
    data = json.dumps(event_payload(event), separators=(",", ":"))
    return f"id: {event_id}\ndata: {data}\n\n".encode()


def _parse_start_args(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(
            Response.error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}")
        ) from None
    if not isinstance(params, dict):
        message = 'body must be a JSON object of start arguments, e.g. {"topic": "x"}'
        raise HttpError(Response.error(HTTPStatus.BAD_REQUEST, message))
    reserved = sorted(RESERVED_START_ARGS & params.keys())
    if reserved:
        message = f"start arguments may not be named {', '.join(reserved)}"
        raise HttpError(Response.error(HTTPStatus.BAD_REQUEST, message))
    run_id = params.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and RUN_ID.fullmatch(run_id)):
        message = f"run_id must match {RUN_ID.pattern}, got {run_id!r}"
        raise HttpError(Response.error(HTTPStatus.BAD_REQUEST, message))
    return params


# --- routes ---------------------------------------------------------------------------

#: (method, path pattern, RunsApi method name). A path that matches with another method
#: gets 405.
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/healthz"), "health"),
    ("POST", re.compile(r"/runs"), "start_run"),
    ("GET", re.compile(r"/runs/(?P<run_id>[^/]+)"), "run_status"),
    ("GET", re.compile(r"/runs/(?P<run_id>[^/]+)/events"), "open_events"),
    ("POST", re.compile(r"/runs/(?P<run_id>[^/]+)/cancel"), "cancel_run"),
)


class RunsApi:
    """The web app's request handling, free of sockets.

    Args:
        workflow: starts runs (``workflow.run(**start_args)``).
        runtime: finds runs by id (``get_run``, ``get_handler``).
        keepalive_seconds: how long an event stream may stay silent before a comment line.
        result_timeout: how long ``GET /runs/<id>`` waits to read a completed run's result.
    """

    def __init__(
        self,
        workflow: Launcher,
        runtime: Runtime,
        *,
        keepalive_seconds: float = 15.0,
        result_timeout: float = 10.0,
    ) -> None:
        self.workflow = workflow
        self.runtime = runtime
        self.keepalive_seconds = keepalive_seconds
        self.result_timeout = result_timeout

    # --- dispatch ---------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> Response | EventStream:
        """Answer one request. ``headers`` has lower-case names."""
        try:
            name, run_id = self._route(method, target)
            if name == "health":
                return Response.json(HTTPStatus.OK, {"status": "ok"})
            if name == "start_run":
                return self.start_run(body)
            if name == "open_events":
                return self.open_events(run_id, headers.get("last-event-id"))
            if name == "cancel_run":
                return self.cancel_run(run_id)
            return self.run_status(run_id)
        except HttpError as exc:
            return exc.response
        except RunNotFoundError as exc:
            return Response.error(HTTPStatus.NOT_FOUND, str(exc))
        except StoreUnavailableError as exc:
            log.warning("run store unavailable: %s", exc)
            return Response.error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    def _route(self, method: str, target: str) -> tuple[str, str]:
        path = urlsplit(target).path
        if len(path) > 1:
            path = path.rstrip("/")
        allowed: list[str] = []
        for route_method, pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            run_id = unquote(match.groupdict().get("run_id") or "")
            if "run_id" in pattern.groupindex and not RUN_ID.fullmatch(run_id):
                raise HttpError(Response.error(HTTPStatus.NOT_FOUND, f"no run {run_id!r}"))
            return name, run_id
        if allowed:
            message = f"{method} is not allowed on {path}"
            allow = (("Allow", ", ".join(sorted(set(allowed)))),)
            raise HttpError(Response.error(HTTPStatus.METHOD_NOT_ALLOWED, message, allow))
        raise HttpError(Response.error(HTTPStatus.NOT_FOUND, f"no route for {path}"))

    # --- routes -----------------------------------------------------------------------

    def start_run(self, body: bytes) -> Response:
        """``POST /runs``: start a run, answer 202 with its id at once."""
        params = _parse_start_args(body)
        # Chosen here, not by the runtime, so an answer that failed still names the run
        # and the client can retry with the same id without starting a second run.
        run_id = params.pop("run_id", None) or uuid.uuid4().hex
        try:
            handler = self.workflow.run(run_id=run_id, **params)
        except RunConflictError as exc:
            return Response.error(HTTPStatus.CONFLICT, str(exc), run_id=run_id)
        except (
            WorkflowRuntimeError,
            WorkflowValidationError,
            InvalidMessageError,
            StateValidationError,
        ) as exc:
            return Response.error(HTTPStatus.BAD_REQUEST, str(exc), run_id=run_id)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            log.exception("starting run %s failed", run_id)
            message = f"could not start run {run_id}: {type(exc).__name__}: {exc}"
            return Response.error(HTTPStatus.SERVICE_UNAVAILABLE, message, run_id=run_id)
        location = f"/runs/{handler.run_id}"
        payload = {
            "run_id": handler.run_id,
            "status_url": location,
            "events_url": f"{location}/events",
        }
        return Response.json(HTTPStatus.ACCEPTED, payload, (("Location", location),))

    def run_status(self, run_id: str) -> Response:
        """``GET /runs/<id>``: status, and the result or the error once finished."""
        run = self.runtime.get_run(run_id)
        payload: dict[str, Any] = {"run_id": run_id, "status": run.status}
        if run.status == "completed":
            handler = self.runtime.get_handler(run_id)
            payload["result"] = handler.result(timeout=self.result_timeout)
        elif run.status in TERMINAL_STATUSES and run.error is not None:
            payload["error"] = dict(run.error)
        return Response.json(HTTPStatus.OK, payload)

    def cancel_run(self, run_id: str) -> Response:
        """``POST /runs/<id>/cancel``: cancel a run still going (409 once it finished)."""
        run = self.runtime.get_run(run_id)
        if run.status in TERMINAL_STATUSES:
            message = f"run {run_id} is already {run.status}"
            payload = {"error": message, "run_id": run_id, "status": run.status}
            return Response.json(HTTPStatus.CONFLICT, payload)
        asyncio.run(self._cancel(run_id))
        status = self.runtime.get_run(run_id).status
        return Response.json(HTTPStatus.OK, {"run_id": run_id, "status": status})

    async def _cancel(self, run_id: str) -> None:
        await self.runtime.get_handler(run_id).cancel_run()

    def open_events(self, run_id: str, last_event_id: str | None) -> Response | EventStream:
        """``GET /runs/<id>/events``: check the run exists before any header is sent."""
        if last_event_id == FINAL_EVENT_ID:
            # The client has the final event; 204 is how SSE says "do not reconnect".
            return Response(HTTPStatus.NO_CONTENT)
        self.runtime.get_run(run_id)
        skip = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        return EventStream(run_id, skip)

    # --- streaming --------------------------------------------------------------------

    def stream(self, stream: EventStream, write: Callable[[bytes], None]) -> None:
        """Write the run's events to ``write`` until its StopEvent (blocks this thread).

        An exception from ``write`` (the client went away) ends the stream and propagates.
        """
        asyncio.run(self._pump(stream, write))

    async def _pump(self, stream: EventStream, write: Callable[[bytes], None]) -> None:
        events = aiter(self.runtime.get_handler(stream.run_id).stream_events())
        seq = 0
        while (event := await self._next_event(events, write)) is not None:
            seq += 1
            final = isinstance(event, StopEvent)
            if seq > stream.skip or final:
                write(sse_message(event, FINAL_EVENT_ID if final else str(seq)))
            if final:
                return

    async def _next_event(
        self, events: AsyncIterator[Event], write: Callable[[bytes], None]
    ) -> Event | None:
        """The next event (None at the end), writing a keep-alive while none comes."""
        pending = asyncio.ensure_future(_anext_or_none(events))
        try:
            while not (await asyncio.wait({pending}, timeout=self.keepalive_seconds))[0]:
                write(KEEPALIVE)
            return pending.result()
        finally:
            pending.cancel()


async def _anext_or_none(events: AsyncIterator[Event]) -> Event | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


# --- the HTTP shell -------------------------------------------------------------------


class RequestHandler(BaseHTTPRequestHandler):
    """Moves bytes between a socket and a :class:`RunsApi`; decides nothing itself."""

    server_version = "celery-workflows-webapp/0.1"

    def __init__(self, request: Any, client_address: Any, server: Any, *, api: RunsApi) -> None:
        self.api = api
        super().__init__(request, client_address, server)  # handles the request

    def do_GET(self) -> None:
        """Answer a GET."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Answer a PUT (405 on every route)."""
        self._serve("PUT")

    def do_DELETE(self) -> None:
        """Answer a DELETE (405 on every route)."""
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = self.rfile.read(content_length(headers.get("content-length")))
            answer = self.api.handle(method, self.path, headers, body)
        except HttpError as exc:
            answer = exc.response
        except Exception:
            log.exception("%s %s failed", method, self.path)
            answer = Response.error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see log)")
        if isinstance(answer, EventStream):
            self._send_stream(answer)
        else:
            self._send(answer)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _send_stream(self, stream: EventStream) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")  # nginx: do not hold events back
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # the end of the body is the end of the stream
        try:
            self.api.stream(stream, self._write)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client left the event stream of run %s", stream.run_id)

    def _write(self, chunk: bytes) -> None:
        self.wfile.write(chunk)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Access log lines go to logging, not to stderr."""
        log.info("%s %s", self.address_string(), format % args)


def make_server(api: RunsApi, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threaded HTTP server answering with ``api`` (one thread per request)."""
    return ThreadingHTTPServer((host, port), partial(RequestHandler, api=api))


def _stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the example workflow: ``python -m celery_workflows.examples.webapp.app``."""
    parser = argparse.ArgumentParser(
        prog="python -m celery_workflows.examples.webapp.app",
        description="Start workflow runs on Celery workers and stream their events.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    # Imported here, not at the top: it builds the Celery app and the run store.
    from celery_workflows.examples.webapp import proj

    server = make_server(RunsApi(proj.workflow, proj.runtime), args.host, args.port)
    # As PID 1 in a container, SIGTERM is ignored unless a handler is installed.
    signal.signal(signal.SIGTERM, _stop)
    log.info("serving on http://%s:%d", *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
