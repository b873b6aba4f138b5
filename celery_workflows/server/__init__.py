"""An HTTP server for workflows in the protocol of ``llama-agents-server`` 0.8, so that
``llama-agents-client``'s ``WorkflowClient`` (and upstream's tools) work against it.

Install the ``server`` extra (Starlette, uvicorn). See :class:`WorkflowServer`.
"""

from __future__ import annotations

from .feeds import NotifyFeed, default_feed
from .hub import ChangeFeed, PollingFeed, StreamHub
from .security import API_TOKEN_ENV
from .server import WorkflowServer

__all__ = [
    "API_TOKEN_ENV",
    "ChangeFeed",
    "NotifyFeed",
    "PollingFeed",
    "StreamHub",
    "WorkflowServer",
    "default_feed",
]
