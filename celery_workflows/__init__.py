"""celery_workflows: LlamaIndex-style workflows whose runs survive worker death.

Write workflows exactly as with ``llama-index-workflows`` (``Workflow``, ``@step``,
``Context``); they run in-process by default, through the same run lifecycle the Celery
runtime uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import workflow as _workflow
from .context import Context
from .decorators import catch_error, step
from .handler import WorkflowHandler
from .runtime.local import default_runtime
from .workflow import Workflow

# The core reaches the in-process runtime only through this hook (imports go one way).
_workflow.default_runtime_factory = default_runtime

if TYPE_CHECKING:
    from .celery import CeleryRuntime

__all__ = ["CeleryRuntime", "Context", "Workflow", "WorkflowHandler", "catch_error", "step"]


def __getattr__(name: str) -> Any:
    # Importing celery is not free: `import celery_workflows` stays without it.
    if name == "CeleryRuntime":
        from .celery import CeleryRuntime

        return CeleryRuntime
    raise AttributeError(f"module 'celery_workflows' has no attribute {name!r}")
