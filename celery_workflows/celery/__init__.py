"""The Celery runtime: every step a Celery task, every event a task message.

This is the only package that imports celery.
"""

from __future__ import annotations

from .dispatch import CeleryDispatcher, task_name
from .runtime import CeleryRuntime

__all__ = ["CeleryDispatcher", "CeleryRuntime", "task_name"]
