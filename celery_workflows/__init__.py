"""celery_workflows: LlamaIndex-style workflows whose runs survive worker death.

Write workflows exactly as with ``llama-index-workflows`` (``Workflow``, ``@step``,
``Context``); they run in-process by default, through the same run lifecycle the Celery
runtime uses.
"""

from __future__ import annotations

from .context import Context
from .decorators import catch_error, step
from .handler import WorkflowHandler
from .workflow import Workflow

__all__ = ["Context", "Workflow", "WorkflowHandler", "catch_error", "step"]
