"""The run page (``/ui/``) in headless Chromium, and the JSON routes it reads.

The page is served by a real server (uvicorn on a socket) over the in-process runtime;
Chromium loads it, runs its script against the server and dumps the DOM it built, and
takes a screenshot of a real run. The timeline route is also read for runs of real
Celery workers, and a stream that asks for internal events gets step events from them.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from headless import Browser
from test_server_client import WAIT, Served, events_of
from workers import WorkerGroup

from celery_workflows import Context, Workflow, step
from celery_workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from celery_workflows.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from celery_workflows.server import WorkflowServer

TOKEN = "page-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Fetched(Event):
    pages: int


class Parsed(Event):
    words: int


class Note(Event):
    text: str


class Report(Workflow):
    """Fetches, parses (failing twice first: retried), summarizes."""

    failures: dict[str, int] = {}

    @step
    async def fetch(self, ctx: Context, ev: StartEvent) -> Fetched:
        ctx.write_event_to_stream(Note(text="fetching 3 pages"))
        await asyncio.sleep(0.2)
        return Fetched(pages=3)

    @step(retry_policy=retry_policy(wait=wait_fixed(0.15), stop=stop_after_attempt(3)))
    async def parse(self, ctx: Context, ev: Fetched) -> Parsed:
        await asyncio.sleep(0.1)
        if ctx.retry_info().retry_number < 2:
            raise ConnectionError(f"parser unavailable (try {ctx.retry_info().retry_number})")
        return Parsed(words=ev.pages * 120)

    @step
    async def summarize(self, ctx: Context, ev: Parsed) -> StopEvent:
        ctx.write_event_to_stream(Note(text=f"{ev.words} words"))
        await asyncio.sleep(0.15)
        return StopEvent(result=f"a report of {ev.words} words")


class AskName(Workflow):
    """Waits for a human's answer (a minute at most)."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="name?"), timeout=60
        )
        return StopEvent(result=f"hello {answer.response}")


class Boom(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("boom on purpose")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chrome = Browser(tmp_path / "chromium-profile")
    try:
        yield chrome
    finally:
        chrome.close()


#: The page has shown a finished run: its steps and every event, to the stream's end.
SHOWN_FINISHED = (
    "document.body.dataset.state === 'run-finished'"
    " && document.getElementById('events').dataset.ended === 'true'"
)


@pytest.fixture
async def page_server() -> AsyncIterator[Served]:
    server = WorkflowServer(api_token=TOKEN)
    server.add_workflow("report", Report(timeout=WAIT))
    server.add_workflow("boom", Boom(timeout=WAIT))
    server.add_workflow("ask", AskName(timeout=WAIT), additional_events=[HumanResponseEvent])
    with Served(server) as served:
        yield served


async def test_the_page_shows_a_real_run_on_its_timeline_in_chromium(
    page_server: Served, browser: Browser, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=page_server.url, headers=AUTH, timeout=WAIT) as http:
        ran = (await http.post("/workflows/report/run", json={})).json()
        assert ran["status"] == "completed", ran
        run_id = ran["handler_id"]
    browser.open(f"{page_server.url}/ui/?token={TOKEN}#run={run_id}")
    await asyncio.to_thread(browser.wait_for, SHOWN_FINISHED)
    dom = browser.dom()
    assert 'data-run-status="completed"' in dom, dom
    steps = re.findall(r'<li data-step="(\w+)" data-status="(\w+)" data-attempt="(\d+)"', dom)
    assert steps == [("fetch", "done", "1"), ("parse", "done", "3"), ("summarize", "done", "1")]
    assert "retried 2\u00d7" in dom and "ConnectionError: parser unavailable (try 1)" in dom
    assert re.findall(r'data-type="(\w+)"', dom) == ["Note", "Note", "StopEvent"]
    assert "a report of 360 words" in dom
    # The token went from the address to the tab's session storage: not in the page.
    assert TOKEN not in dom and TOKEN not in browser.evaluate("location.href")
    shot = tmp_path / "run-page.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("CW_RUN_PAGE_SCREENSHOT"):  # refreshing docs/run-page.png
        shutil.copy(shot, os.environ["CW_RUN_PAGE_SCREENSHOT"])


async def test_the_page_follows_a_waiting_run_live(page_server: Served, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=page_server.url, headers=AUTH, timeout=WAIT) as http:
        run_id = (await http.post("/workflows/ask/run-nowait", json={})).json()["handler_id"]
        browser.open(f"{page_server.url}/ui/?token={TOKEN}#run={run_id}")
        await asyncio.to_thread(
            browser.wait_for,
            "document.body.dataset.runStatus === 'waiting'"
            " && document.querySelectorAll('#events li').length === 1",
        )
        dom = browser.dom()
        assert 'data-state="run-live"' in dom, dom
        steps = re.findall(r'<li data-step="(\w+)" data-status="(\w+)"', dom)
        assert steps == [("ask", "done"), ("ask", "pending")]  # the wait, its timeout
        assert "ask waits for HumanResponseEvent (times out after 60 s)" in dom
        assert "wait timeout, due" in dom
        assert re.findall(r'data-type="(\w+)"', dom) == ["InputRequiredEvent"]
        # The answer arrives while the page is open: it follows the run to its end.
        event = {"type": "HumanResponseEvent", "value": {"response": "cy"}}
        sent = await http.post(f"/events/{run_id}", json={"event": event})
        assert sent.status_code == 200, sent.text
        await asyncio.to_thread(browser.wait_for, SHOWN_FINISHED)
    dom = browser.dom()
    assert re.findall(r'data-type="(\w+)"', dom) == ["InputRequiredEvent", "StopEvent"]
    assert 'data-run-status="completed"' in dom and "hello cy" in dom
    steps = re.findall(r'<li data-step="(\w+)" data-status="(\w+)"', dom)
    assert ("ask", "done") in steps and "waits for" not in dom


async def test_the_page_lists_runs_and_asks_for_a_token_without_one(
    page_server: Served, browser: Browser, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=page_server.url, headers=AUTH, timeout=WAIT) as http:
        done = (await http.post("/workflows/report/run", json={})).json()
        failed = (await http.post("/workflows/boom/run", json={})).json()
    browser.open(f"{page_server.url}/ui/?token={TOKEN}")
    await asyncio.to_thread(browser.wait_for, "document.body.dataset.state === 'list'")
    dom = browser.dom()
    links = re.findall(r'href="#run=(\w+)"', dom)
    assert links == [failed["handler_id"], done["handler_id"]]  # newest first
    assert '<span class="badge s-failed">failed</span>' in dom
    # Another browser (no token in its session) gets the token form, and no data; the
    # token typed there is used.
    fresh = Browser(tmp_path / "fresh-profile")
    try:
        fresh.open(f"{page_server.url}/ui/")
        await asyncio.to_thread(fresh.wait_for, "document.body.dataset.state === 'token'")
        assert done["handler_id"] not in fresh.dom()
        fresh.evaluate(
            f"document.getElementById('token-input').value = {TOKEN!r};"
            "document.getElementById('token-form').requestSubmit()"
        )
        await asyncio.to_thread(fresh.wait_for, "document.body.dataset.state === 'list'")
        assert done["handler_id"] in fresh.dom()
    finally:
        fresh.close()


async def test_the_page_files_are_open_and_its_data_needs_the_token(page_server: Served) -> None:
    async with httpx.AsyncClient(base_url=page_server.url, timeout=WAIT) as http:
        page = await http.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert (await http.get("/ui", follow_redirects=False)).status_code == 308
        for name in ("app.js", "app.css"):
            assert (await http.get(f"/ui/{name}")).status_code == 200
        assert "http" not in re.sub(r"https?://www\.w3\.org\S*", "", page.text)  # no CDN
        started = await http.post("/workflows/report/run", json={}, headers=AUTH)
        run_id = started.json()["handler_id"]
        for path in ("/ui/api/runs", f"/handlers/{run_id}/timeline", "/ui/nope"):
            assert (await http.get(path)).status_code == 401, path
        timeline = (await http.get(f"/handlers/{run_id}/timeline", headers=AUTH)).json()
        assert timeline["run"]["status"] == "completed"
        parse = next(d for d in timeline["deliveries"] if d["step"] == "parse")
        assert parse["attempt"] == 3 and parse["retry"]["count"] == 2
        assert parse["retry"]["last_error"]["type"] == "ConnectionError"
        assert (await http.get("/handlers/nope/timeline", headers=AUTH)).status_code == 404


async def test_the_runs_route_filters_and_pages(page_server: Served) -> None:
    async with httpx.AsyncClient(base_url=page_server.url, headers=AUTH, timeout=WAIT) as http:
        ids = [(await http.post("/workflows/boom/run", json={})).json()["handler_id"]]
        ids += [(await http.post("/workflows/report/run", json={})).json()["handler_id"]
                for _ in range(3)]  # fmt: skip
        first = (await http.get("/ui/api/runs", params={"limit": 2})).json()
        assert [r["run_id"] for r in first["runs"]] == ids[::-1][:2]
        params = {"limit": 2, "cursor": first["next_cursor"]}
        second = (await http.get("/ui/api/runs", params=params)).json()
        assert [r["run_id"] for r in second["runs"]] == ids[::-1][2:]
        assert second["next_cursor"] is None
        failed = (await http.get("/ui/api/runs", params={"status": "failed"})).json()
        assert [r["run_id"] for r in failed["runs"]] == ids[:1]
        assert failed["runs"][0]["error"] == {"type": "ValueError", "message": "boom on purpose"}
        report = (await http.get("/ui/api/runs", params={"workflow": "report"})).json()
        assert len(report["runs"]) == 3 and report["workflows"] == ["report", "boom", "ask"]
        for bad in ({"status": "nope"}, {"limit": "0"}, {"cursor": "!!"}):
            assert (await http.get("/ui/api/runs", params=bad)).status_code == 400, bad


# --- CeleryRuntime: real workers, Redis, PostgreSQL -------------------------------------


def proj() -> Any:
    import cw_proj  # configured by the celery_env fixture's environment

    return cw_proj


@pytest.mark.integration
async def test_celery_timeline_and_step_events_on_request(workers: WorkerGroup) -> None:
    from celery_workflows.events import StepState, StepStateChanged

    p = proj()
    workers.start("w1")
    server = WorkflowServer(api_token=TOKEN)
    server.add_workflow("features", p.features)
    server.add_workflow("ask", p.ask, additional_events=[HumanResponseEvent])
    with Served(server) as served:
        client = served.client(TOKEN)
        done = await client.run_workflow("features")
        assert done.status == "completed", workers.log_tail()
        auth = httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=WAIT)
        async with auth as http:
            body = (await http.get(f"/handlers/{done.handler_id}/timeline")).json()
            by_step = {d["step"]: d for d in body["deliveries"]}
            assert by_step["flaky"]["attempt"] == 3 and by_step["flaky"]["retry"]["count"] == 2
            assert by_step["broken"]["status"] == "failed"
            assert by_step["broken"]["error"]["message"] == "broken for good"
            assert by_step["join"]["status"] == "done"
            # Nobody asked for this run's step events: none were written.
            assert "step_events" not in p.runtime.get_run(done.handler_id).meta
            plain = await events_of(client, done.handler_id, after_sequence=-1,
                                    include_internal_events=True)  # fmt: skip
            assert not [e for e in plain if e.type == "StepStateChanged"]
            # A stream with internal events on a waiting run: its steps write them from now.
            asked = await client.run_workflow_nowait("ask")
            stream = client.get_workflow_events(asked.handler_id, include_internal_events=True)
            seen = []
            async for event in stream:
                seen.append(event)
                if event.type == "InputRequiredEvent":
                    assert p.runtime.get_run(asked.handler_id).meta["step_events"] is True
                    await client.send_event(asked.handler_id, HumanResponseEvent(response="ada"))
        changes = [e for e in seen if e.type == "StepStateChanged"]
        assert [(e.value["name"], e.value["step_state"]) for e in changes[-2:]] == [
            ("ask", StepState.RUNNING.value), ("ask", StepState.NOT_RUNNING.value)
        ]  # fmt: skip
        assert changes[-1].value["output_event_name"] == str(StopEvent)
        assert seen[-1].type == "StopEvent" and seen[-1].value["result"] == "hello ada"
        # And through the Python API: a handler re-attached by run id asks the same way.
        again = p.ask.run()
        handler = p.runtime.get_handler(again.run_id)
        events: list[Any] = []
        async for event in handler.stream_events(expose_internal=True):
            events.append(event)
            if type(event).__name__ == "InputRequiredEvent":
                await handler.send_event(HumanResponseEvent(response="bo"))
        states = [(e.name, e.step_state) for e in events if isinstance(e, StepStateChanged)]
        assert states[-2:] == [("ask", StepState.RUNNING), ("ask", StepState.NOT_RUNNING)]
        await served.close_clients()
