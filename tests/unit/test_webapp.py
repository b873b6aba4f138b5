"""The example web app mounts the workflow server under ``/api`` (no broker or database
is touched: these requests read only the served workflows)."""

from __future__ import annotations

import httpx

from celery_workflows.examples.webapp.app import make_app

TOKEN = {"Authorization": "Bearer t0k"}


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(api_token="t0k"))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_the_mounted_server_answers_under_api_with_the_token() -> None:
    async with client() as http:
        assert (await http.get("/")).json()["workflows"] == "/api/workflows"
        assert (await http.get("/api/health")).json() == {"status": "healthy"}  # open
        assert (await http.get("/api/workflows")).status_code == 401
        listed = await http.get("/api/workflows", headers=TOKEN)
        assert listed.json() == {"workflows": ["report"]}
        graph = (await http.get("/api/workflows/report/representation", headers=TOKEN)).json()
        steps = {n["id"] for n in graph["graph"]["nodes"] if n["node_type"] == "step"}
        assert steps == {"plan", "write_section", "assemble"}


async def test_the_mounted_server_refuses_a_form_post_before_starting_anything() -> None:
    async with client() as http:
        url = "/api/workflows/report/run-nowait"
        assert (await http.post(url, data={"topic": "x"}, headers=TOKEN)).status_code == 415
        assert (await http.get("/api/workflows/nope/schema", headers=TOKEN)).status_code == 404
