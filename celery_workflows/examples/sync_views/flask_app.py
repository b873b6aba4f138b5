"""A Flask app that starts runs from a sync view and re-attaches to them by run id.

    from celery_workflows.examples.sync_views.flask_app import create_app
    from proj import report            # a Workflow(runtime=CeleryRuntime(...))

    app = create_app(report)           # flask --app web run; workers: celery -A proj worker

``POST /reports`` (JSON ``{"topic": ...}``) answers 202 with the run id at once;
``GET /reports/<run_id>`` answers the run's status, then its result.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, jsonify, request, url_for

from celery_workflows import Workflow
from celery_workflows.runtime.base import BaseRuntime

from .runs import describe_run, start_run

__all__ = ["create_app"]


def create_app(workflow: Workflow) -> Any:
    """The Flask app; ``workflow`` runs on its own runtime (Celery in production)."""
    runtime = workflow.runtime
    assert isinstance(runtime, BaseRuntime), "the workflow needs a runtime"
    app = Flask(__name__)

    def start_report() -> Any:
        topic = (request.get_json(silent=True) or {}).get("topic")
        if not isinstance(topic, str) or not topic:
            abort(400, "a JSON body with a 'topic' string")
        run_id = start_run(workflow, topic=topic)
        location = url_for("report", run_id=run_id)
        return jsonify(run_id=run_id, status_url=location), 202, {"Location": location}

    def report(run_id: str) -> Any:
        found = describe_run(runtime, run_id)
        if found is None:
            abort(404)
        return jsonify(found)

    app.add_url_rule("/reports", "start_report", start_report, methods=["POST"])
    app.add_url_rule("/reports/<run_id>", "report", report, methods=["GET"])
    return app
