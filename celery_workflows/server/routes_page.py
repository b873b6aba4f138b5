"""The run page: static files under ``/ui`` and the two JSON routes it reads.

The page's files hold no secret and are served without a token (a browser cannot send a
header when it follows a link); everything it shows comes from routes that need the
bearer token like every other one: ``/ui/api/runs`` (a page of runs) and
``/handlers/{id}/timeline`` (a run and its deliveries), plus the protocol's own SSE route.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, get_args

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..store.base import RunQuery, RunRecord, RunStatus
from .catalog import Catalog, Served
from .timeline import run_entry, timeline

__all__ = ["PAGE_FILES", "PAGE_PATHS", "page_routes"]

#: Files of the page, by URL path, with their media types.
PAGE_FILES: dict[str, tuple[str, str]] = {
    "/ui/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: Paths answered without a token: the page's files (no data in them).
PAGE_PATHS = frozenset({"/ui", *PAGE_FILES})
#: Largest page of runs one request may ask for.
MAX_PAGE = 200
#: The page's files never run scripts from elsewhere, never load anything from a CDN and
#: are never framed: the policy says so to the browser too.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_FILE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _encode_cursor(run: RunRecord) -> str:
    raw = f"{run.created_at.isoformat()}|{run.run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, run_id = raw.split("|", 1)
        return datetime.fromisoformat(at), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(400, "Invalid cursor") from exc


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", "50")
    if not text.isdigit() or not 0 < int(text) <= MAX_PAGE:
        raise HTTPException(400, f"limit: a whole number from 1 to {MAX_PAGE}")
    return int(text)


def _statuses(request: Request) -> tuple[RunStatus, ...] | None:
    wanted = [s for s in request.query_params.getlist("status") if s]
    if not wanted:
        return None
    known = get_args(RunStatus)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise HTTPException(400, f"Unknown status {unknown[0]!r}: one of {', '.join(known)}")
    return tuple(s for s in known if s in wanted)


async def _page_of_runs(
    served: list[Served], statuses: tuple[RunStatus, ...] | None, limit: int,
    cursor: tuple[datetime, str] | None,
) -> tuple[list[tuple[RunRecord, Served]], bool]:  # fmt: skip
    """The newest ``limit`` runs after ``cursor`` among ``served`` workflows: each one's
    first page, merged (keyset paging holds across stores), and whether more follow."""
    found: list[tuple[RunRecord, Served]] = []
    for one in served:
        query = RunQuery(statuses=statuses, workflow_name=one.workflow.workflow_name,
                         limit=limit + 1, cursor=cursor)  # fmt: skip
        found.extend((run, one) for run in await one.runtime().store.list_runs(query))
    found.sort(key=lambda item: (item[0].created_at, item[0].run_id), reverse=True)
    return found[:limit], len(found) > limit


def page_routes(catalog: Catalog) -> list[Route]:
    """The page's files and its JSON routes."""

    async def index(request: Request) -> Response:
        # One canonical address, so the page's relative links resolve the same way.
        return RedirectResponse(request.url.replace(path=request.url.path + "/"), 308)

    def page_file(name: str, media: str) -> Any:
        async def serve(request: Request) -> Response:
            return Response(_read(name), media_type=media, headers=_FILE_HEADERS)

        return serve

    async def runs(request: Request) -> JSONResponse:
        names = [n for n in request.query_params.getlist("workflow") if n]
        served = [s for s in catalog.all() if not names or s.name in names]
        text = request.query_params.get("cursor")
        cursor = _decode_cursor(text) if text else None
        page, more = await _page_of_runs(served, _statuses(request), _limit(request), cursor)
        body: dict[str, Any] = {
            "workflows": catalog.names(),
            "runs": [run_entry(run, one.name) for run, one in page],
            "next_cursor": _encode_cursor(page[-1][0]) if more and page else None,
        }
        return JSONResponse(body)

    async def run_timeline(request: Request) -> JSONResponse:
        served, run = await catalog.find(request.path_params["handler_id"])
        deliveries = await served.runtime().store.list_deliveries(run.run_id)
        return JSONResponse(timeline(run, served.name, deliveries))

    routes = [Route("/ui", index, methods=["GET"])]
    routes += [Route(path, page_file(*PAGE_FILES[path]), methods=["GET"]) for path in PAGE_FILES]
    routes += [
        Route("/ui/api/runs", runs, methods=["GET"]),
        Route("/handlers/{handler_id}/timeline", run_timeline, methods=["GET"]),
    ]
    return routes
