"""The sync-view examples (Flask, Django): they compile, and what they do runs for real.

Neither framework is a dependency: the framework modules are compiled here, and run only
where the framework is installed. Their shared part (start a run, re-attach by id) runs
on a CeleryRuntime with an in-memory broker, a SQLite run store and a worker thread.
"""

from __future__ import annotations

import json
import py_compile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_workflows import Workflow, step
from celery_workflows.events import StartEvent, StopEvent
from celery_workflows.examples.sync_views import runs

EXAMPLES = Path(runs.__file__).parent


class Report(Workflow):
    """Writes a report on a topic; the topic "nothing" fails it."""

    @step
    async def write(self, ev: StartEvent) -> StopEvent:
        if ev.topic == "nothing":
            raise ValueError("no report on nothing")
        return StopEvent(result=f"a report on {ev.topic}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workflow]:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from celery_workflows import CeleryRuntime

    app = Celery("sync_views", broker="memory://")
    url = f"sqlite:///{tmp_path_factory.mktemp('sync_views') / 'runs.db'}"
    runtime = CeleryRuntime(app, database_url=url, sweep_interval=0.2)
    workflow = Report(runtime=runtime, timeout=30)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        yield workflow
        runtime.worker.stop()


def settled(runtime: Any, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (found := runs.describe_run(runtime, run_id)) and found["status"] in (
        "running",
        "waiting",
    ):
        assert time.monotonic() < deadline, f"run {run_id} did not end"
        time.sleep(0.05)
    assert found is not None
    return found


@pytest.mark.parametrize("name", ["runs.py", "flask_app.py", "django_views.py"])
def test_every_sync_view_example_compiles(name: str, tmp_path: Path) -> None:
    py_compile.compile(str(EXAMPLES / name), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_a_run_started_from_sync_code_is_found_again_by_its_id(report: Workflow) -> None:
    run_id = runs.start_run(report, topic="tides")
    assert settled(report.runtime, run_id) == {
        "run_id": run_id,
        "status": "completed",
        "result": "a report on tides",
    }
    failed = settled(report.runtime, runs.start_run(report, topic="nothing"))
    assert failed["status"] == "failed" and "no report on nothing" in failed["error"]
    assert runs.describe_run(report.runtime, "no-such-run") is None


def test_the_flask_example_starts_and_reads_a_run(report: Workflow) -> None:
    pytest.importorskip("flask")
    from celery_workflows.examples.sync_views.flask_app import create_app

    client = create_app(report).test_client()
    started = client.post("/reports", json={"topic": "tides"})
    assert started.status_code == 202
    run_id = started.get_json()["run_id"]
    assert started.headers["Location"] == f"/reports/{run_id}"
    settled(report.runtime, run_id)
    assert client.get(f"/reports/{run_id}").get_json()["result"] == "a report on tides"
    assert client.get("/reports/nope").status_code == 404
    assert client.post("/reports", json={}).status_code == 400


def test_the_django_example_starts_and_reads_a_run(report: Workflow) -> None:
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"])
    import django
    from django.test import RequestFactory
    from django.urls import clear_url_caches, resolve

    from celery_workflows.examples.sync_views.django_views import report_urls

    django.setup()
    global urlpatterns
    urlpatterns = report_urls(report)
    clear_url_caches()
    factory = RequestFactory()
    body = json.dumps({"topic": "tides"})
    request = factory.post("/reports/", body, content_type="application/json")
    started = resolve("/reports/").func(request)
    assert started.status_code == 202
    run_id = json.loads(started.content)["run_id"]
    settled(report.runtime, run_id)
    read = resolve(f"/reports/{run_id}/")
    answer = read.func(factory.get(f"/reports/{run_id}/"), **read.kwargs)
    assert json.loads(answer.content)["result"] == "a report on tides"


urlpatterns: list[Any] = []
