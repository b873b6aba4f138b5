"""What stands between the network and the routes: a bearer token, a cross-site guard, a
bounded body, and error answers that say nothing about the infrastructure.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_TOKEN_ENV",
    "DEFAULT_MAX_BODY_BYTES",
    "Guard",
    "error_response",
    "http_error_response",
    "store_error_response",
]

log = logging.getLogger("celery_workflows.server")

#: Environment variable read for the bearer token when none is given to the server.
API_TOKEN_ENV = "CELERY_WORKFLOWS_API_TOKEN"
#: Largest request body accepted (bytes): a start event or a human's answer, not files.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Paths answered without a token (load balancers probe them).
OPEN_PATHS = frozenset({"/health"})
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware: token check, cross-site refusal and body limit, in that order.

    - With a token, every path but ``open_paths`` (``/health``; the run page's files)
      needs ``Authorization: Bearer <token>``
      (401 otherwise; compared in constant time).
    - A state-changing request a browser sends from another origin (its ``Origin`` is
      neither this host nor one of ``allowed_origins``) is refused (403): without CORS
      configured, a page elsewhere can neither start nor cancel a run. Non-browser
      clients send no ``Origin`` and pass.
    - A body larger than ``max_body_bytes`` is refused (413) before any route reads it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_origins: Collection[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        open_paths: Collection[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.token = token
        self.open_paths = frozenset(open_paths)
        self.allowed_origins = frozenset(allowed_origins)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refusal(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        if scope["method"] in _UNSAFE:
            body = await self._bounded_body(request, receive)
            if body is None:
                await _detail(413, "Request body too large")(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self._answer_errors(scope, receive, send)

    async def _answer_errors(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An unexpected error is answered here, before Starlette's outermost handler,
        # which would answer it and then raise it again into the server (the client's
        # connection is cut). Logged with its traceback; the answer says nothing.
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            log.error("error on %s %s", scope["method"], scope.get("path"), exc_info=exc)
            await _detail(500, "Internal server error")(scope, receive, send)

    def _refusal(self, request: Request) -> JSONResponse | None:
        path = _route_path(request.scope)
        if self.token is not None and path not in self.open_paths:
            given = request.headers.get("authorization", "")
            scheme, _, credential = given.partition(" ")
            valid = scheme.lower() == "bearer" and hmac.compare_digest(
                credential.strip().encode(), self.token.encode()
            )
            if not valid:
                return _detail(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        if request.method in _UNSAFE and not self._same_site(request):
            return _detail(403, "Cross-origin request refused")
        return None

    def _same_site(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin in self.allowed_origins or "*" in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def _bounded_body(self, request: Request, receive: Receive) -> bytes | None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _route_path(scope: Scope) -> str:
    # Mounted under a prefix, the path still carries it; the routes see it without.
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later reads wait for the disconnect, as usual

    return replay


def resolve_token(token: str | None) -> str | None:
    """The configured token: the argument, else ``CELERY_WORKFLOWS_API_TOKEN``; empty
    means none."""
    chosen = token if token is not None else os.environ.get(API_TOKEN_ENV)
    return chosen or None


async def read_json(request: Request) -> Any:
    """The request's JSON body. Only ``application/json`` is read: a browser sends a
    cross-site form or text POST without asking first, never a JSON one (415)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPException(415, "Content-Type must be application/json")
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"Invalid JSON body: {exc}") from exc


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """An HTTPException as ``{"detail": ...}`` (the protocol's error body)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 204:
        return JSONResponse(None, status_code=204)
    return _detail(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def store_error_response(request: Request, exc: Exception) -> JSONResponse:
    """A run store error: logged here, answered without its message (it names the
    database's host and name)."""
    log.error("run store error on %s %s: %s", request.method, request.url.path, exc)
    return _detail(503, "The run store is unavailable")


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: logged here, answered without its message or traceback."""
    log.error("error on %s %s", request.method, request.url.path, exc_info=exc)
    return _detail(500, "Internal server error")
