"""Django views that start runs from a sync view and re-attach to them by run id.

    # urls.py
    from celery_workflows.examples.sync_views.django_views import report_urls
    from proj import report            # a Workflow(runtime=CeleryRuntime(...))

    urlpatterns = [*report_urls(report)]

``POST /reports/`` (form or JSON ``topic``) answers 202 with the run id at once;
``GET /reports/<run_id>/`` answers the run's status, then its result. The POST goes
through Django's CSRF check like any other: a browser form carries the CSRF token.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from celery_workflows import Workflow
from celery_workflows.runtime.base import BaseRuntime

from .runs import describe_run, start_run

__all__ = ["report_urls"]


def _topic(request: HttpRequest) -> Any:
    if request.content_type == "application/json":
        try:
            return json.loads(request.body or b"{}").get("topic")
        except (ValueError, AttributeError):
            return None
    return request.POST.get("topic")


def report_urls(workflow: Workflow) -> list[Any]:
    """URL patterns of the two views for ``workflow`` (on its own runtime)."""
    runtime = workflow.runtime
    assert isinstance(runtime, BaseRuntime), "the workflow needs a runtime"

    def start_report(request: HttpRequest) -> JsonResponse:
        topic = _topic(request)
        if not isinstance(topic, str) or not topic:
            return JsonResponse({"detail": "a 'topic' string is required"}, status=400)
        run_id = start_run(workflow, topic=topic)
        location = reverse("report", args=[run_id])
        response = JsonResponse({"run_id": run_id, "status_url": location}, status=202)
        response["Location"] = location
        return response

    def report(request: HttpRequest, run_id: str) -> JsonResponse:
        found = describe_run(runtime, run_id)
        if found is None:
            raise Http404("no such run")
        return JsonResponse(found)

    return [
        path("reports/", require_POST(start_report), name="start_report"),
        path("reports/<str:run_id>/", require_GET(report), name="report"),
    ]
