"""``celery_workflows.server`` against the real ``llama-agents-client``, over a real socket.

uvicorn serves the app on an ephemeral port in a thread of the test process; the
client is upstream's ``WorkflowClient`` (with upstream's event classes). The runs go to
(a) the in-process runtime, in the server's loop, and (b) ``CeleryRuntime``, on real
``celery worker`` processes with Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from llama_agents.client import WorkflowClient
from workers import WorkerGroup, wait_until
from workflows.events import HumanResponseEvent as UpstreamHumanResponse
from workflows.events import StartEvent as UpstreamStart

from celery_workflows import Context, Workflow, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from celery_workflows.server import WorkflowServer

WAIT = 60.0  # bound on every wait of this module


class Note(Event):
    text: str


class Greet(Workflow):
    """Streams two notes, then greets."""

    @step
    async def greet(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(2):
            ctx.write_event_to_stream(Note(text=f"note {n}"))
            await asyncio.sleep(0.05)
        return StopEvent(result=f"hello {ev.get('name', 'world')}")


class AskName(Workflow):
    """Waits for a human's answer."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="name?")
        )
        return StopEvent(result=f"hello {answer.response}")


class Boom(Workflow):
    """Always fails."""

    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("boom on purpose")


class Served:
    """A WorkflowServer under uvicorn in a thread, on a socket bound to port 0."""

    def __init__(self, server: WorkflowServer) -> None:
        self.server = server
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(server.app, log_level="warning", lifespan="on")
        self.uvicorn = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.clients: list[httpx.AsyncClient] = []

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.uvicorn.serve(sockets=[self.sock])

        asyncio.run(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        wait_until(lambda: self.uvicorn.started, WAIT, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"

    def client(self, token: str | None = None) -> WorkflowClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=WAIT)
        self.clients.append(http)
        return WorkflowClient(httpx_client=http)

    async def close_clients(self) -> None:
        for http in self.clients:
            await http.aclose()

    def open_streams(self) -> int:
        return sum(hub.subscriptions for hub in self.server.hubs())

    def readers_running(self) -> int:
        return sum(hub.running for hub in self.server.hubs())


async def events_of(client: WorkflowClient, handler_id: str, **kwargs: Any) -> list[Any]:
    async def read() -> list[Any]:
        return [event async for event in client.get_workflow_events(handler_id, **kwargs)]

    return await asyncio.wait_for(read(), WAIT)


async def until(check: Any, what: str) -> None:
    """Await ``check()`` true, bounded by WAIT (checked every 50 ms)."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --- (a) the in-process runtime ------------------------------------------------------


@pytest.fixture
async def local() -> AsyncIterator[Served]:
    server = WorkflowServer(api_token="s3cret", sse_heartbeat_interval=0.2)
    server.add_workflow("greet", Greet(timeout=WAIT))
    server.add_workflow("ask", AskName(timeout=WAIT), additional_events=[HumanResponseEvent])
    server.add_workflow("boom", Boom(timeout=WAIT))
    with Served(server) as served:
        yield served
        await served.close_clients()


async def test_client_lists_runs_and_reads_workflows_in_process(local: Served) -> None:
    client = local.client("s3cret")
    assert (await client.is_healthy()).status == "healthy"
    assert (await client.list_workflows()).workflows == ["greet", "ask", "boom"]
    schema = await client.get_workflow_schema("greet")
    assert schema.start["title"] == "StartEvent" and schema.stop["title"] == "StopEvent"
    graph = (await client.get_workflow_graph("greet")).graph
    assert {n.id for n in graph.nodes} >= {"greet", "StartEvent", "StopEvent"}
    done = await client.run_workflow("greet", start_event=UpstreamStart(name="ada"))
    assert done.status == "completed" and done.result is not None
    assert done.result.type == "StopEvent" and done.result.value["result"] == "hello ada"
    assert done.handler_id == done.run_id


async def test_run_nowait_then_stream_then_reconnect_after_a_sequence(local: Served) -> None:
    client = local.client("s3cret")
    started = await client.run_workflow_nowait("greet", start_event=UpstreamStart(name="bo"))
    stream = client.get_workflow_events(started.handler_id)
    seen = await asyncio.wait_for(_collect(stream), WAIT)
    assert [e.type for e in seen] == ["Note", "Note", "StopEvent"]
    assert seen[0].value == {"text": "note 0"} and seen[0].types is None
    assert seen[-1].qualified_name == "workflows.events.StopEvent"
    # A client that left after the first note resumes after its sequence: the rest.
    first = client.get_workflow_events(started.handler_id)
    async for event in first:
        assert event.type == "Note"
        break
    rest = await events_of(client, started.handler_id, after_sequence=first.last_sequence)
    assert [e.type for e in rest] == ["Note", "StopEvent"]
    # A stream of a finished run read to its end: 204, the client ends at once.
    assert await events_of(client, started.handler_id, after_sequence=stream.last_sequence) == []
    handler = await client.get_handler(started.handler_id)
    assert handler.status == "completed" and handler.completed_at is not None
    legacy = await client.httpx_client.get(f"/results/{started.handler_id}")  # type: ignore[union-attr]
    assert legacy.status_code == 200 and legacy.json()["result"] == "hello bo"


async def test_raw_sse_has_ids_last_event_id_and_ndjson(local: Served) -> None:
    client = local.client("s3cret")
    started = await client.run_workflow_nowait("greet")
    await client.wait_for_handler(started.handler_id, timeout=WAIT, poll_interval=0.05)
    auth = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient(base_url=local.url, headers=auth, timeout=WAIT) as http:
        url = f"/events/{started.handler_id}"
        sse = await http.get(url, params={"after_sequence": "-1"})
        assert sse.headers["content-type"].startswith("text/event-stream")
        ids = [int(line[3:]) for line in sse.text.splitlines() if line.startswith("id:")]
        assert len(ids) == 3 and ids == sorted(ids)  # internal events keep theirs, unsent
        last_id = {"Last-Event-ID": str(ids[1])}  # wins over after_sequence
        resumed = await http.get(url, params={"after_sequence": "-1"}, headers=last_id)
        assert [line for line in resumed.text.splitlines() if line.startswith("id:")] == [
            f"id: {ids[2]}"
        ]
        ndjson = await http.get(url, params={"after_sequence": "-1", "sse": "false"})
        lines = [httpx.Response(200, content=line).json() for line in ndjson.text.splitlines()]
        assert [e["type"] for e in lines] == ["Note", "Note", "StopEvent"]
        internal = await http.get(
            url, params={"after_sequence": "-1", "sse": "false", "include_internal": "true"}
        )
        assert len(internal.text.splitlines()) > len(lines)  # step state changes too
        assert (await http.get(url, params={"after_sequence": "x"})).status_code == 400


async def test_human_in_the_loop_answer_through_the_client(local: Served) -> None:
    client = local.client("s3cret")
    started = await client.run_workflow_nowait("ask")
    stream = client.get_workflow_events(started.handler_id)
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "InputRequiredEvent":
            assert event.value["_data"]["prefix"] == "name?"
            sent = await client.send_event(started.handler_id, UpstreamHumanResponse(response="cy"))
            assert sent.status == "sent"
    assert seen[-1].type == "StopEvent" and seen[-1].value["result"] == "hello cy"
    assert local.open_streams() == 0


async def test_heartbeats_keep_a_quiet_stream_and_a_client_that_leaves_frees_the_reader(
    local: Served,
) -> None:
    client = local.client("s3cret")
    started = await client.run_workflow_nowait("ask")  # waits: a quiet stream
    auth = {"Authorization": "Bearer s3cret"}
    async with (
        httpx.AsyncClient(base_url=local.url, headers=auth, timeout=WAIT) as http,
        http.stream("GET", f"/events/{started.handler_id}") as response,
    ):
        lines = response.aiter_lines()
        while await asyncio.wait_for(anext(lines), WAIT) != ": heartbeat":
            pass
        assert local.open_streams() == 1 and local.readers_running() == 1
    await until(lambda: _true(local.open_streams() == 0), "the stream to be dropped")
    await until(lambda: _true(local.readers_running() == 0), "the reader task to end")
    await client.cancel_handler(started.handler_id)


async def test_a_client_that_leaves_a_silent_stream_frees_its_reader_at_once() -> None:
    # No heartbeat: nothing is written after the first event, so only watching for the
    # disconnect can notice the client left.
    server = WorkflowServer(api_token="", sse_heartbeat_interval=None)
    server.add_workflow("ask", AskName(timeout=WAIT))
    with Served(server) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=WAIT) as http:
            started = (await http.post("/workflows/ask/run-nowait", json={})).json()
            url = f"/events/{started['handler_id']}"
            async with http.stream("GET", url, params={"after_sequence": "-1"}) as response:
                lines = response.aiter_lines()
                while "InputRequiredEvent" not in await asyncio.wait_for(anext(lines), WAIT):
                    pass
                assert served.open_streams() == 1
            left = time.monotonic()
            await until(lambda: _true(served.readers_running() == 0), "the reader to end")
            assert served.open_streams() == 0 and time.monotonic() - left < 2.0
            await http.post(f"/handlers/{started['handler_id']}/cancel")


async def test_many_open_streams_share_one_reader_task(local: Served) -> None:
    client = local.client("s3cret")
    runs = [await client.run_workflow_nowait("ask") for _ in range(3)]
    streams = [client.get_workflow_events(run.handler_id) for run in runs]
    firsts = [aiter(stream) for stream in streams]
    for first in firsts:  # each stream is open and has its first event
        event = await asyncio.wait_for(anext(first), WAIT)
        assert event.type in {"StepStateChanged", "InputRequiredEvent"}
    assert local.open_streams() == 3 and local.readers_running() == 1
    for run in runs:
        await client.cancel_handler(run.handler_id)
    for first in firsts:
        rest = await asyncio.wait_for(_collect(first), WAIT)
        assert rest[-1].type == "WorkflowCancelledEvent"
    await until(lambda: _true(local.readers_running() == 0), "the reader task to end")


async def test_handlers_filter_cancel_and_a_failed_run(local: Served) -> None:
    client = local.client("s3cret")
    waiting = await client.run_workflow_nowait("ask")
    with pytest.raises(httpx.HTTPStatusError) as failing:
        await client.run_workflow("boom")  # 500 with the handler, as upstream answers
    failed = failing.value.response.json()
    assert failing.value.response.status_code == 500
    assert failed["status"] == "failed" and failed["error"] == "boom on purpose"
    running = await client.get_handlers(status=["running"])
    assert [h.handler_id for h in running.handlers] == [waiting.handler_id]
    by_name = await client.get_handlers(workflow_name=["boom"])
    assert [h.status for h in by_name.handlers] == ["failed"]
    assert (await client.cancel_handler(waiting.handler_id)).status == "cancelled"
    with pytest.raises(httpx.HTTPStatusError) as cancelled:
        await client.get_handler(waiting.handler_id)  # 500: failed or cancelled
    assert cancelled.value.response.status_code == 500
    assert cancelled.value.response.json()["status"] == "cancelled"
    with pytest.raises(httpx.HTTPStatusError) as again:
        await client.cancel_handler(waiting.handler_id)
    assert again.value.response.status_code == 404
    assert (await client.cancel_handler(waiting.handler_id, purge=True)).status == "deleted"
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.get_handler(waiting.handler_id)
    assert gone.value.response.status_code == 404


async def test_a_request_without_the_token_is_refused_but_health_is_open(local: Served) -> None:
    client = local.client()
    assert (await client.is_healthy()).status == "healthy"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.list_workflows()
    assert refused.value.response.status_code == 401
    with pytest.raises(httpx.HTTPStatusError):
        await local.client("wrong").run_workflow_nowait("greet")
    assert (await local.client("s3cret").get_handlers()).handlers == []


async def test_a_cross_origin_form_post_starts_nothing(local: Served) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient(base_url=local.url, headers=auth, timeout=WAIT) as http:
        form = await http.post("/workflows/greet/run-nowait", data={"start_event": "{}"})
        assert form.status_code == 415
        text = await http.post(
            "/workflows/greet/run-nowait", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert text.status_code == 415
        evil = {"Origin": "https://evil.example"}
        elsewhere = await http.post("/workflows/greet/run-nowait", json={}, headers=evil)
        assert elsewhere.status_code == 403
        read = await http.get("/workflows", headers=evil)  # CORS off: no browser may read it
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
        big = await http.post("/workflows/greet/run-nowait", json={"pad": "x" * (2 << 20)})
        assert big.status_code == 413
        bad = await http.post("/events/nope", json={"event": {"type": "os.system", "value": {}}})
        assert bad.status_code == 404
    assert (await local.client("s3cret").get_handlers()).handlers == []


async def test_cors_when_configured_lets_that_origin_start_a_run() -> None:
    server = WorkflowServer(api_token="", cors_origins=["https://app.example"])
    server.add_workflow("greet", Greet(timeout=WAIT))
    allowed = {"Origin": "https://app.example"}
    with Served(server) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=WAIT) as http:
            preflight = await http.options(
                "/workflows/greet/run",
                headers={**allowed, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type"},
            )  # fmt: skip
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            ran = await http.post("/workflows/greet/run", json={}, headers=allowed)
            assert ran.status_code == 200 and ran.json()["status"] == "completed"
            assert ran.headers["access-control-allow-origin"] == "https://app.example"
            other = {"Origin": "https://other.example"}
            assert (
                await http.post("/workflows/greet/run", json={}, headers=other)
            ).status_code == 403


async def test_an_event_of_an_unregistered_type_is_refused(local: Served) -> None:
    client = local.client("s3cret")
    started = await client.run_workflow_nowait("ask")
    auth = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient(base_url=local.url, headers=auth, timeout=WAIT) as http:
        for event in (
            {"type": "Popen", "value": {}},
            {"qualified_name": "subprocess.Popen", "value": {"args": ["true"]}},
        ):
            refused = await http.post(f"/events/{started.handler_id}", json={"event": event})
            assert refused.status_code == 400, refused.text
    await client.cancel_handler(started.handler_id)


async def test_a_store_error_answers_without_the_database_url() -> None:
    from celery import Celery

    from celery_workflows import CeleryRuntime

    url = "postgresql+psycopg://cw:s3cret@127.0.0.1:1/hidden_db"
    runtime = CeleryRuntime(Celery("unreachable", broker="memory://"), database_url=url)
    server = WorkflowServer(api_token="")
    server.add_workflow("greet", Greet(runtime=runtime, workflow_name="unreachable.Greet"))
    with Served(server) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=WAIT) as http:
            answers = [
                await http.get("/handlers"),
                await http.get("/handlers/some-run"),
                await http.post("/workflows/greet/run-nowait", json={}),
            ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"detail": "The run store is unavailable"}
        for leak in ("s3cret", "127.0.0.1", "hidden_db", "postgresql", "Traceback"):
            assert leak not in answer.text


# --- (b) CeleryRuntime: real workers, Redis, PostgreSQL ---------------------------------


def proj() -> Any:
    import cw_proj  # configured by the celery_env fixture's environment

    return cw_proj


@pytest.fixture
async def on_celery(workers: WorkerGroup) -> AsyncIterator[Served]:
    p = proj()
    workers.start("w1")
    server = WorkflowServer(api_token="tok")
    server.add_workflow("counter", p.counter)
    server.add_workflow("fan_out", p.fan_out)
    server.add_workflow("ask", p.ask, additional_events=[HumanResponseEvent])
    server.add_workflow("sleepy", p.sleepy)
    with Served(server) as served:
        yield served
        await served.close_clients()


@pytest.mark.integration
async def test_celery_runs_streams_and_a_human_answer_through_the_client(
    on_celery: Served, workers: WorkerGroup
) -> None:
    client = on_celery.client("tok")
    done = await client.run_workflow("counter")
    assert done.status == "completed", workers.log_tail()
    assert done.result is not None and done.result.value["result"] == 1
    started = await client.run_workflow_nowait("fan_out", start_event=UpstreamStart(n=4))
    seen = await events_of(client, started.handler_id)
    assert sorted(e.value["message"] for e in seen if e.type == "Progress") == [
        f"tick {n}" for n in range(4)
    ]
    assert seen[-1].type == "StopEvent" and seen[-1].value["result"]["total"] == 6
    # Reconnect after the first progress event: the rest, nothing twice.
    first = client.get_workflow_events(started.handler_id)
    async for _ in first:
        break
    rest = await events_of(client, started.handler_id, after_sequence=first.last_sequence)
    assert len(rest) == len(seen) - 1 and rest[-1].type == "StopEvent"
    asked = await client.run_workflow_nowait("ask")
    stream = client.get_workflow_events(asked.handler_id)
    async for event in stream:
        if event.type == "InputRequiredEvent":
            await client.send_event(asked.handler_id, UpstreamHumanResponse(response="ada"))
        last = event
    assert last.type == "StopEvent" and last.value["result"] == "hello ada"


@pytest.mark.integration
async def test_celery_a_second_server_serves_the_same_runs(on_celery: Served) -> None:
    p = proj()
    other = WorkflowServer(api_token="tok")
    other.add_workflow("ask", p.ask, additional_events=[HumanResponseEvent])
    with Served(other) as second:
        started = await on_celery.client("tok").run_workflow_nowait("ask")
        client = second.client("tok")  # another server process would answer the same
        stream = client.get_workflow_events(started.handler_id)
        async for event in stream:
            if event.type == "InputRequiredEvent":
                await client.send_event(started.handler_id, UpstreamHumanResponse(response="bo"))
        handler = await client.get_handler(started.handler_id)
        assert handler.status == "completed" and handler.result is not None
        assert handler.result.value["result"] == "hello bo"
        await second.close_clients()


@pytest.mark.integration
async def test_celery_handlers_filter_cancel_and_a_failed_run(on_celery: Served) -> None:
    client = on_celery.client("tok")
    waiting = await client.run_workflow_nowait("ask")
    await until(
        lambda: _has_status(client, waiting.handler_id, "running", "ask"), "the run to wait"
    )
    with pytest.raises(httpx.HTTPStatusError) as timed_out:
        await client.run_workflow("sleepy")  # its workflow timeout fails it
    failed = timed_out.value.response.json()
    assert failed["status"] == "failed" and failed["error"] == "Workflow timed out after 1.5s"
    # The Celery fixtures share one database per session: other tests' runs are listed
    # too, newest first, and the filter must hold for every one of them.
    listed = await client.get_handlers(status=["failed"], workflow_name=["sleepy"])
    assert listed.handlers[0].handler_id == failed["handler_id"]
    assert {(h.status, h.workflow_name) for h in listed.handlers} == {("failed", "sleepy")}
    assert (await client.cancel_handler(waiting.handler_id)).status == "cancelled"
    events = await events_of(client, waiting.handler_id)
    assert events[-1].type == "WorkflowCancelledEvent"
    cancelled = await client.get_handlers(status=["cancelled"])
    assert cancelled.handlers[0].handler_id == waiting.handler_id
    assert {h.status for h in cancelled.handlers} == {"cancelled"}


async def _has_status(client: WorkflowClient, handler_id: str, status: str, name: str) -> bool:
    found = await client.get_handlers(status=[status], workflow_name=[name])
    return handler_id in {h.handler_id for h in found.handlers}


def _true(value: bool) -> Any:
    async def check() -> bool:
        return value

    return check()


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]
