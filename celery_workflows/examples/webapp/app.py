"""The example web app: a Starlette app that mounts the workflow server under ``/api``.

The server speaks the protocol of ``llama-agents-server``, so ``llama-agents-client`` (or
curl) starts ``report`` runs, streams their progress and reads their results; the runs
go on in the Celery workers (``celery -A celery_workflows.examples.webapp.proj worker``).
Requests need ``Authorization: Bearer $CELERY_WORKFLOWS_API_TOKEN`` when that is set.

    python -m celery_workflows.examples.webapp.app --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from celery_workflows.server import WorkflowServer

__all__ = ["app", "main", "make_app"]


def make_app(api_token: str | None = None) -> Starlette:
    """The site: its own routes, and the workflow server at ``/api`` (``api_token``:
    else ``CELERY_WORKFLOWS_API_TOKEN``)."""
    from .proj import workflow  # the Celery app and runtime are built on first use

    server = WorkflowServer(api_token=api_token)
    server.add_workflow("report", workflow)

    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"api": "/api", "workflows": "/api/workflows", "health": "/api/health"})

    return Starlette(routes=[Route("/", index), Mount("/api", app=server.app)])


app = make_app()


def main(argv: list[str] | None = None) -> None:
    """Serve :data:`app` with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
