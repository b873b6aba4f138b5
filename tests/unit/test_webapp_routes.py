"""The example web app's request handling (routes, JSON, SSE framing), without a server.

``RunsApi`` is driven directly with a fake runtime; no socket, broker or database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pytest

from celery_workflows.errors import (
    InvalidMessageError,
    RunConflictError,
    RunNotFoundError,
    StoreUnavailableError,
    WorkflowRuntimeError,
)
from celery_workflows.events import Event, StopEvent, WorkflowCancelledEvent
from celery_workflows.examples.webapp.app import (
    KEEPALIVE,
    MAX_BODY_BYTES,
    EventStream,
    HttpError,
    Response,
    RunsApi,
    content_length,
    event_payload,
    sse_message,
)


class Progress(Event):
    """A streamed event with declared fields."""

    section: str
    done: int


@dataclass
class FakeRun:
    status: str = "running"
    error: dict[str, Any] | None = None


@dataclass
class FakeRuntime:
    """Runs, results and streams by run id, as a CeleryRuntime would answer them."""

    runs: dict[str, FakeRun] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, list[Event]] = field(default_factory=dict)
    pause: float = 0.0
    closed: list[str] = field(default_factory=list)
    store_down: bool = False

    def get_run(self, run_id: str) -> FakeRun:
        if self.store_down:
            raise StoreUnavailableError("cannot reach run store database postgresql://db/x")
        try:
            return self.runs[run_id]
        except KeyError:
            raise RunNotFoundError(run_id) from None

    def get_handler(self, run_id: str) -> FakeHandle:
        self.get_run(run_id)
        return FakeHandle(self, run_id)


@dataclass
class FakeHandle:
    runtime: FakeRuntime
    run_id: str

    def result(self, timeout: float | None = None) -> Any:
        return self.runtime.results[self.run_id]

    async def stream_events(self) -> AsyncIterator[Event]:
        try:
            for event in self.runtime.streams.get(self.run_id, []):
                await asyncio.sleep(self.runtime.pause)
                yield event
        finally:
            self.runtime.closed.append(self.run_id)

    async def cancel_run(self) -> None:
        self.runtime.runs[self.run_id] = FakeRun("cancelled", {"kind": "cancelled"})


@dataclass
class FakeWorkflow:
    """Starts runs in the fake runtime; ``refuse`` makes ``run()`` raise it."""

    runtime: FakeRuntime
    refuse: Exception | None = None
    started: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def run(self, **kwargs: Any) -> FakeHandle:
        if self.refuse is not None:
            raise self.refuse
        run_id = kwargs.pop("run_id")
        self.runtime.runs.setdefault(run_id, FakeRun())
        self.started.append((run_id, kwargs))
        return FakeHandle(self.runtime, run_id)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def workflow(runtime: FakeRuntime) -> FakeWorkflow:
    return FakeWorkflow(runtime)


@pytest.fixture
def api(workflow: FakeWorkflow, runtime: FakeRuntime) -> RunsApi:
    return RunsApi(workflow, runtime, keepalive_seconds=5.0)


def respond(api: RunsApi, method: str, path: str, body: bytes = b"", **headers: str) -> Response:
    answer = api.handle(method, path, headers, body)
    assert isinstance(answer, Response), answer
    return answer


def stream_bytes(api: RunsApi, run_id: str, skip: int = 0) -> bytes:
    chunks: list[bytes] = []
    api.stream(EventStream(run_id, skip), chunks.append)
    return b"".join(chunks)


def sse_payloads(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    messages = []
    for block in raw.decode().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        messages.append((fields["id"], json.loads(fields["data"])))
    return messages


def add_run(runtime: FakeRuntime, run_id: str, status: str = "running", **kw: Any) -> None:
    runtime.runs[run_id] = FakeRun(status, kw.get("error"))
    if "result" in kw:
        runtime.results[run_id] = kw["result"]
    runtime.streams[run_id] = kw.get("stream", [])


# --- POST /runs --------------------------------------------------------------------------


def test_start_run_answers_202_with_the_run_id_at_once(api: RunsApi) -> None:
    response = respond(api, "POST", "/runs", b'{"topic": "x"}')

    assert response.status == HTTPStatus.ACCEPTED
    run_id = response.payload["run_id"]
    assert len(run_id) == 32
    assert response.payload["events_url"] == f"/runs/{run_id}/events"
    assert ("Location", f"/runs/{run_id}") in response.headers
    assert ("Content-Type", "application/json") in response.headers


def test_start_run_passes_the_json_body_as_start_arguments(
    api: RunsApi, workflow: FakeWorkflow
) -> None:
    respond(api, "POST", "/runs", b'{"topic": "x", "delay": 0.5}')

    assert workflow.started[0][1] == {"topic": "x", "delay": 0.5}


def test_start_run_accepts_an_empty_body_as_no_arguments(
    api: RunsApi, workflow: FakeWorkflow
) -> None:
    response = respond(api, "POST", "/runs")

    assert response.status == HTTPStatus.ACCEPTED
    assert workflow.started[0][1] == {}


def test_start_run_keeps_a_client_chosen_run_id(api: RunsApi, workflow: FakeWorkflow) -> None:
    first = respond(api, "POST", "/runs", b'{"run_id": "order-42", "topic": "x"}')
    again = respond(api, "POST", "/runs", b'{"run_id": "order-42", "topic": "x"}')

    assert first.payload["run_id"] == again.payload["run_id"] == "order-42"
    assert [run_id for run_id, _ in workflow.started] == ["order-42", "order-42"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"{not json", b"\xff\xfe"])
def test_start_run_rejects_a_body_that_is_not_a_json_object(api: RunsApi, body: bytes) -> None:
    response = respond(api, "POST", "/runs", body)

    assert response.status == HTTPStatus.BAD_REQUEST
    assert "body" in response.payload["error"]


@pytest.mark.parametrize("name", ["ctx", "start_event"])
def test_start_run_rejects_reserved_argument_names(
    api: RunsApi, workflow: FakeWorkflow, name: str
) -> None:
    response = respond(api, "POST", "/runs", json.dumps({name: 1}).encode())

    assert response.status == HTTPStatus.BAD_REQUEST
    assert name in response.payload["error"]
    assert workflow.started == []


@pytest.mark.parametrize("run_id", ["", "../etc", "a/b", 42, "x" * 200])
def test_start_run_rejects_a_malformed_run_id(api: RunsApi, run_id: object) -> None:
    response = respond(api, "POST", "/runs", json.dumps({"run_id": run_id}).encode())

    assert response.status == HTTPStatus.BAD_REQUEST
    assert "run_id" in response.payload["error"]


def test_start_run_answers_400_when_the_workflow_refuses_the_start_arguments(
    api: RunsApi, workflow: FakeWorkflow
) -> None:
    workflow.refuse = WorkflowRuntimeError("Failed creating a start event of type 'Start'")

    response = respond(api, "POST", "/runs", b'{"run_id": "r1", "bad": 1}')

    assert response.status == HTTPStatus.BAD_REQUEST
    assert response.payload == {
        "error": "Failed creating a start event of type 'Start'",
        "run_id": "r1",
    }


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (RunConflictError("r1", "start event", "run 'r1' ... another start event"), 409),
        (InvalidMessageError("run 'r1' step 's', start event StartEvent field x: nan"), 400),
    ],
)
def test_start_run_answers_409_for_a_run_id_started_otherwise_and_400_for_bad_input(
    api: RunsApi, workflow: FakeWorkflow, refusal: Exception, status: int
) -> None:
    workflow.refuse = refusal

    response = respond(api, "POST", "/runs", b'{"run_id": "r1", "x": NaN}')

    assert response.status == status
    assert response.payload == {"error": str(refusal), "run_id": "r1"}


def test_start_run_answers_503_naming_the_run_when_the_broker_is_down(
    api: RunsApi, workflow: FakeWorkflow, caplog: pytest.LogCaptureFixture
) -> None:
    workflow.refuse = ConnectionRefusedError("Error 111 connecting to redis:6379")

    response = respond(api, "POST", "/runs", b'{"run_id": "r1"}')

    assert response.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.payload["run_id"] == "r1"
    assert "could not start run r1" in response.payload["error"]
    assert "starting run r1 failed" in caplog.text


# --- GET /runs/<id> ----------------------------------------------------------------------


def test_run_status_reports_a_running_run_without_result(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "r1")

    response = respond(api, "GET", "/runs/r1")

    assert response.status == HTTPStatus.OK
    assert response.payload == {"run_id": "r1", "status": "running"}


def test_run_status_includes_the_result_of_a_completed_run(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "r1", "completed", result={"sections": 3})

    response = respond(api, "GET", "/runs/r1")

    assert response.payload == {"run_id": "r1", "status": "completed", "result": {"sections": 3}}


def test_run_status_writes_a_result_json_cannot_hold_as_strings(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    add_run(runtime, "r1", "completed", result={"at": when, "obj": object()})

    result = respond(api, "GET", "/runs/r1").payload["result"]

    assert result["at"] == "2026-01-02T03:04:05Z"
    assert result["obj"].startswith("<object object")


def test_run_status_includes_the_error_of_a_failed_run(api: RunsApi, runtime: FakeRuntime) -> None:
    error = {"kind": "timeout", "message": "Operation timed out after 300 seconds."}
    add_run(runtime, "r1", "failed", error=error)

    response = respond(api, "GET", "/runs/r1")

    assert response.payload == {"run_id": "r1", "status": "failed", "error": error}


def test_run_status_answers_404_for_an_unknown_run(api: RunsApi) -> None:
    response = respond(api, "GET", "/runs/nope")

    assert response.status == HTTPStatus.NOT_FOUND
    assert "nope" in response.payload["error"]


def test_run_status_answers_503_when_the_run_store_is_unreachable(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    runtime.store_down = True

    response = respond(api, "GET", "/runs/r1")

    assert response.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert "cannot reach run store" in response.payload["error"]


# --- routing -----------------------------------------------------------------------------


def test_routes_answer_404_for_an_unknown_path(api: RunsApi) -> None:
    response = respond(api, "GET", "/nothing/here")

    assert response.status == HTTPStatus.NOT_FOUND
    assert response.payload == {"error": "no route for /nothing/here"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/runs", "POST"),
        ("DELETE", "/runs/r1", "GET"),
        ("GET", "/runs/r1/cancel", "POST"),
        ("POST", "/runs/r1/events", "GET"),
    ],
)
def test_routes_answer_405_with_the_allowed_method(
    api: RunsApi, method: str, path: str, allow: str
) -> None:
    response = respond(api, method, path)

    assert response.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert ("Allow", allow) in response.headers


def test_routes_ignore_the_query_string_and_a_trailing_slash(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "r1")

    response = respond(api, "GET", "/runs/r1/?verbose=1")

    assert response.payload == {"run_id": "r1", "status": "running"}


def test_routes_answer_404_for_a_malformed_run_id_in_the_path(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "-r1")

    response = respond(api, "GET", "/runs/%2Dr1")

    assert response.status == HTTPStatus.NOT_FOUND


def test_health_answers_ok(api: RunsApi) -> None:
    response = respond(api, "GET", "/healthz")

    assert (response.status, response.payload) == (HTTPStatus.OK, {"status": "ok"})


# --- POST /runs/<id>/cancel --------------------------------------------------------------


def test_cancel_run_cancels_a_running_run(api: RunsApi, runtime: FakeRuntime) -> None:
    add_run(runtime, "r1")

    response = respond(api, "POST", "/runs/r1/cancel")

    assert response.status == HTTPStatus.OK
    assert response.payload == {"run_id": "r1", "status": "cancelled"}
    assert runtime.runs["r1"].status == "cancelled"


def test_cancel_run_answers_409_for_a_finished_run(api: RunsApi, runtime: FakeRuntime) -> None:
    add_run(runtime, "r1", "completed", result=1)

    response = respond(api, "POST", "/runs/r1/cancel")

    assert response.status == HTTPStatus.CONFLICT
    assert response.payload["status"] == "completed"
    assert runtime.runs["r1"].status == "completed"


def test_cancel_run_answers_404_for_an_unknown_run(api: RunsApi) -> None:
    assert respond(api, "POST", "/runs/nope/cancel").status == HTTPStatus.NOT_FOUND


# --- GET /runs/<id>/events ---------------------------------------------------------------


def test_open_events_answers_404_for_an_unknown_run_before_streaming(api: RunsApi) -> None:
    assert respond(api, "GET", "/runs/nope/events").status == HTTPStatus.NOT_FOUND


def test_open_events_answers_a_stream_of_the_run(api: RunsApi, runtime: FakeRuntime) -> None:
    add_run(runtime, "r1")

    assert api.handle("GET", "/runs/r1/events", {}) == EventStream("r1", 0)


def test_open_events_resumes_after_the_last_event_id(api: RunsApi, runtime: FakeRuntime) -> None:
    add_run(runtime, "r1")

    answer = api.handle("GET", "/runs/r1/events", {"last-event-id": "2"})

    assert answer == EventStream("r1", 2)


def test_open_events_answers_204_to_a_client_that_has_the_final_event(api: RunsApi) -> None:
    response = respond(api, "GET", "/runs/r1/events", **{"last-event-id": "end"})

    assert response.status == HTTPStatus.NO_CONTENT
    assert response.body == b""


def test_stream_writes_each_event_as_one_sse_message_until_the_stop_event(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    events = [
        Progress(section="a", done=1),
        Progress(section="b", done=2),
        StopEvent(result={"sections": 2}),
        Progress(section="never", done=3),
    ]
    add_run(runtime, "r1", stream=events)

    raw = stream_bytes(api, "r1")

    assert raw.startswith(b"id: 1\ndata: {")
    assert sse_payloads(raw) == [
        ("1", {"type": "Progress", "data": {"section": "a", "done": 1}}),
        ("2", {"type": "Progress", "data": {"section": "b", "done": 2}}),
        ("end", {"type": "StopEvent", "data": {"result": {"sections": 2}}}),
    ]
    assert runtime.closed == ["r1"]


def test_stream_skips_events_the_client_already_has_but_always_sends_the_final_one(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    events = [Progress(section="a", done=1), Progress(section="b", done=2), StopEvent()]
    add_run(runtime, "r1", stream=events)

    assert [eid for eid, _ in sse_payloads(stream_bytes(api, "r1", skip=1))] == ["2", "end"]
    assert [eid for eid, _ in sse_payloads(stream_bytes(api, "r1", skip=9))] == ["end"]


def test_stream_ends_with_the_stream_of_a_run_that_had_no_stop_event(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "r1", "failed", stream=[Progress(section="a", done=1)])

    assert [eid for eid, _ in sse_payloads(stream_bytes(api, "r1"))] == ["1"]


def test_stream_sends_a_cancelled_run_its_final_event(api: RunsApi, runtime: FakeRuntime) -> None:
    add_run(runtime, "r1", "cancelled", stream=[WorkflowCancelledEvent()])

    assert sse_payloads(stream_bytes(api, "r1")) == [
        ("end", {"type": "WorkflowCancelledEvent", "data": {}})
    ]


def test_stream_writes_keepalive_comments_while_the_run_is_quiet(
    workflow: FakeWorkflow, runtime: FakeRuntime
) -> None:
    api = RunsApi(workflow, runtime, keepalive_seconds=0.01)
    runtime.pause = 0.1
    add_run(runtime, "r1", stream=[Progress(section="a", done=1), StopEvent()])

    raw = stream_bytes(api, "r1")

    assert raw.startswith(KEEPALIVE)
    assert [eid for eid, _ in sse_payloads(raw)] == ["1", "end"]


def test_stream_stops_reading_the_run_when_the_client_goes_away(
    api: RunsApi, runtime: FakeRuntime
) -> None:
    add_run(runtime, "r1", stream=[Progress(section="a", done=i) for i in range(5)])

    def write(chunk: bytes) -> None:
        raise BrokenPipeError("client went away")

    with pytest.raises(BrokenPipeError):
        api.stream(EventStream("r1"), write)
    assert runtime.closed == ["r1"]


# --- formatting --------------------------------------------------------------------------


def test_event_payload_merges_extra_fields_into_data() -> None:
    payload = event_payload(Progress(section="a", done=1, note="extra"))

    assert payload == {"type": "Progress", "data": {"note": "extra", "section": "a", "done": 1}}


def test_event_payload_of_a_stop_event_carries_its_result() -> None:
    assert event_payload(StopEvent(result=[1, 2])) == {
        "type": "StopEvent",
        "data": {"result": [1, 2]},
    }


def test_sse_message_is_one_data_line_even_with_newlines_in_values() -> None:
    message = sse_message(Event(text="line one\nline two"), "7")

    lines = message.decode().split("\n")
    assert lines[0] == "id: 7"
    assert lines[1].startswith("data: ")
    assert lines[2:] == ["", ""]
    assert json.loads(lines[1][6:])["data"] == {"text": "line one\nline two"}


def test_content_length_of_a_request_without_body_is_zero() -> None:
    assert content_length(None) == 0
    assert content_length("") == 0
    assert content_length("12") == 12


def test_content_length_rejects_a_value_that_is_not_a_size() -> None:
    with pytest.raises(HttpError) as caught:
        content_length("-1")

    assert caught.value.response.status == HTTPStatus.BAD_REQUEST


def test_content_length_rejects_a_body_over_the_limit() -> None:
    with pytest.raises(HttpError) as caught:
        content_length(str(MAX_BODY_BYTES + 1))

    assert caught.value.response.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
