"""``WorkflowServer``: workflows over HTTP, in the protocol of ``llama-agents-server``.

The server starts runs, reads run rows and streams; it never executes steps (the
workflow's runtime does: Celery workers in production). Its state is the run store, so
several server processes behind a load balancer serve the same runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import StoreError
from ..events import Event
from ..store.base import RunStore
from .catalog import Catalog
from .hub import ChangeFeed, StreamHub
from .routes_handlers import handler_routes
from .routes_page import PAGE_PATHS, page_routes
from .routes_workflows import workflow_routes
from .security import (
    DEFAULT_MAX_BODY_BYTES,
    OPEN_PATHS,
    Guard,
    error_response,
    http_error_response,
    resolve_token,
    store_error_response,
)

if TYPE_CHECKING:
    from ..runtime.base import BaseRuntime
    from ..workflow import Workflow

__all__ = ["WorkflowServer"]


class WorkflowServer:
    """Serves workflows to ``llama-agents-client`` (and curl) over HTTP.

    Args:
        api_token: bearer token every request but ``GET /health`` must carry; default the
            ``CELERY_WORKFLOWS_API_TOKEN`` environment variable; unset or empty: no check.
        middleware: Starlette middleware applied outside the server's own guard.
        cors_origins: origins a browser may call from (CORS off when None).
        max_body_bytes: largest request body (413 above it).
        sse_heartbeat_interval: seconds of silence before an SSE comment (None: never).
        change_feed: makes the :class:`ChangeFeed` of a run store's stream hub (default:
            :func:`~.feeds.default_feed`: :class:`~.feeds.NotifyFeed`, woken when a
            followed run commits, on a store that pushes commits (PostgreSQL, memory);
            else :class:`~.hub.PollingFeed`, one read of all followed streams every 0.25 s).
        run_page: serve the run page at ``/ui/`` (its files need no token; the data it
            shows does: open ``/ui/?token=...`` or answer its prompt).

    Example::

        server = WorkflowServer()
        server.add_workflow("report", ReportWorkflow(runtime=runtime))
        await server.serve("0.0.0.0", 8000)      # or mount server.app in an ASGI app
    """

    def __init__(
        self,
        *,
        api_token: str | None = None,
        middleware: Sequence[Middleware] | None = None,
        cors_origins: Sequence[str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sse_heartbeat_interval: float | None = 25.0,
        change_feed: Callable[[RunStore], ChangeFeed] | None = None,
        run_page: bool = True,
    ) -> None:
        self._catalog = Catalog(change_feed)
        token = resolve_token(api_token)
        stack = list(middleware or [])
        if cors_origins:
            stack.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=list(cors_origins),
                    allow_methods=["GET", "POST"],
                    allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                )
            )
        stack.append(
            Middleware(
                Guard,
                token=token,
                allowed_origins=list(cors_origins or ()),
                max_body_bytes=max_body_bytes,
                open_paths=OPEN_PATHS | PAGE_PATHS if run_page else OPEN_PATHS,
            )
        )

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self._catalog.close()

        routes = [
            Route("/health", _health, methods=["GET"]),
            *workflow_routes(self._catalog),
            *handler_routes(self._catalog, sse_heartbeat_interval),
            *(page_routes(self._catalog) if run_page else []),
        ]
        self.app = Starlette(
            routes=routes,
            middleware=stack,
            lifespan=lifespan,
            exception_handlers={
                HTTPException: http_error_response,
                # Handled inside the app (ExceptionMiddleware): answered, not re-raised.
                StoreError: store_error_response,
                Exception: error_response,
            },
        )

    def add_workflow(
        self, name: str, workflow: Workflow, additional_events: list[type[Event]] | None = None
    ) -> None:
        """Serve ``workflow`` at ``/workflows/{name}/...``.

        ``additional_events`` are event types clients may send that the step signatures
        do not name (e.g. a ``HumanResponseEvent`` awaited by ``ctx.wait_for_event``):
        an incoming event is resolved only among the workflow's events and these.
        """
        self._catalog.add(name, workflow, additional_events or ())

    def get_workflows(self) -> dict[str, Workflow]:
        """Served workflows by name."""
        return {served.name: served.workflow for served in self._catalog.all()}

    def hub(self, runtime: BaseRuntime) -> StreamHub:
        """The stream hub of ``runtime``'s store in the running loop (for monitoring)."""
        return self._catalog.hub(runtime)

    def hubs(self) -> list[StreamHub]:
        """Every stream hub this server made."""
        return self._catalog.hubs()

    async def serve(
        self, host: str = "localhost", port: int = 80, uvicorn_config: dict[str, Any] | None = None
    ) -> None:
        """Serve with uvicorn until stopped (``uvicorn_config``: more ``uvicorn.Config``
        arguments, e.g. ``log_level``)."""
        import uvicorn

        config = uvicorn.Config(self.app, host=host, port=port, **(uvicorn_config or {}))
        await uvicorn.Server(config).serve()


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy"})
