"""Test helpers (upstream path ``workflows.testing``)."""

from __future__ import annotations

from .runner import WorkflowTestResult, WorkflowTestRunner

__all__ = ["WorkflowTestResult", "WorkflowTestRunner"]
