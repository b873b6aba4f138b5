"""celery_workflows: LlamaIndex-style workflows whose runs survive worker death.

Write workflows exactly as with ``llama-index-workflows`` (``Workflow``, ``@step``,
``Context``); run them in-process (the default) or on Celery with ``CeleryRuntime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import Context
from .decorators import catch_error, step
from .handler import WorkflowHandler
from .workflow import Workflow

if TYPE_CHECKING:
    from .celery import CeleryRuntime

__all__ = ["CeleryRuntime", "Context", "Workflow", "WorkflowHandler", "catch_error", "step"]


def __getattr__(name: str) -> Any:
    # CeleryRuntime imports celery; keep `import celery_workflows` free of it.
    if name == "CeleryRuntime":
        from .celery import CeleryRuntime

        return CeleryRuntime
    raise AttributeError(f"module 'celery_workflows' has no attribute {name!r}")
