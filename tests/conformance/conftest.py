"""Fixtures of the behaviour conformance suite.

Every test takes the ``impl`` fixture and runs once per implementation: upstream
``workflows`` (llama-index-workflows 2.26.1, the reference) and ``celery_workflows``.
Both expose the same public modules, so a test names only ``impl.<thing>``.

Event base classes differ per implementation, so tests define their events and
workflows inside the test body (or a factory taking ``impl``), binding the names used in
annotations to locals first: step annotations are resolved with ``get_type_hints``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from embedded import embedded_sqlite_default

IMPLEMENTATIONS = (
    "workflows",
    "celery_workflows",
    "celery_workflows-sqlite",
    "celery_workflows-celery",
)

#: Where a persisted (JSON) run store differs from in-process upstream, on purpose. Each is
#: a strict xfail on the SQLite parametrization: if one starts passing, the test says so.
JSON_STORE_DIFFERENCES = {
    "test_ctx_round_trip_with_the_pickle_serializer_keeps_state": (
        "a persisted run keeps only JSON state: a set is refused with its key path"
    ),
    "test_typed_state_set_does_not_validate_the_value": (
        "persisted typed state is validated before it is written"
    ),
}
#: Where running on Celery differs on purpose (strict xfails on the Celery parametrization).
_AS_JSON = "the result crosses a process boundary as JSON: a tuple comes back as a list"
CELERY_DIFFERENCES: dict[str, str] = {
    **{
        name: _AS_JSON
        for name in (
            "test_run_kwargs_build_the_default_start_event",
            "test_retry_info_on_the_first_attempt_is_empty",
            "test_resource_factory_is_called_once_when_cached",
            "test_resource_factory_without_cache_is_called_per_injection",
            "test_accept_event_subclasses_routes_a_subclass_to_the_base_step",
            "test_store_set_of_a_dotted_path_creates_intermediate_dicts",
            "test_store_default_state_is_a_dict_state",
            "test_store_set_state_replaces_the_whole_state",
            "test_store_clear_resets_to_an_empty_state",
            "test_store_edit_state_commits_on_exit",
            "test_store_reads_inside_edit_state_see_the_committed_state",
            "test_store_a_concurrent_step_reads_committed_state_during_an_edit",
            "test_store_an_exception_inside_edit_state_discards_the_changes",
            "test_typed_state_starts_from_the_model_defaults",
            "test_typed_state_edit_state_yields_the_model",
        )
    },
    **JSON_STORE_DIFFERENCES,
    "test_two_instances_of_one_workflow_class_run_their_own_steps": (
        "a worker runs a step on the workflow instance registered under its name: an "
        "instance's own attributes do not cross the process boundary"
    ),
    "test_num_concurrent_runs_queues_runs_beyond_the_limit": (
        "num_concurrent_runs is not enforced by the Celery runtime yet"
    ),
}
#: Timing-dependent on Celery (not strict).
CELERY_TIMING = {
    "test_a_step_returning_none_emits_nothing": (
        "messages sent by one step are consumed in parallel by the worker pool: "
        "num_workers=1 serializes them but does not keep their order"
    ),
    "test_num_workers_caps_concurrent_executions_of_a_step": (
        "a delivery over num_workers is retried 0.2 s later, so short steps may never "
        "overlap and the peak can stay below num_workers"
    ),
}

#: Timing-dependent on SQLite (not strict): passes when the reading step claims its
#: delivery before the writing step takes the database-wide write lock, else times out.
SQLITE_TIMING = {
    "test_store_a_concurrent_step_reads_committed_state_during_an_edit": (
        "SQLite has one database-wide write lock: a step may not start while another "
        "step holds edit_state() (PostgreSQL locks only the run row)"
    ),
}
REFERENCE = "workflows"

# Bound on every wait of the suite: a hang fails in seconds, not at the global timeout.
WAIT_SECONDS = 5.0

T = TypeVar("T")


@functools.cache
def load_impl(pkg: str) -> SimpleNamespace:
    """Import one implementation's public surface into a namespace.

    Raises ImportError (or AttributeError) when the package or a public name is missing.
    """
    root = importlib.import_module(pkg)
    events = importlib.import_module(f"{pkg}.events")
    context = importlib.import_module(f"{pkg}.context")
    # Upstream exports DictState from ``workflows.context.state_store`` only.
    state_store = importlib.import_module(f"{pkg}.context.state_store")
    handler = importlib.import_module(f"{pkg}.handler")
    return SimpleNamespace(
        name=pkg,
        Workflow=root.Workflow,
        step=root.step,
        catch_error=root.catch_error,
        Context=root.Context,
        events=events,
        errors=importlib.import_module(f"{pkg}.errors"),
        retry_policy=importlib.import_module(f"{pkg}.retry_policy"),
        resource=importlib.import_module(f"{pkg}.resource"),
        context=context,
        testing=importlib.import_module(f"{pkg}.testing"),
        decorators=importlib.import_module(f"{pkg}.decorators"),
        handler=handler,
        WorkflowHandler=handler.WorkflowHandler,
        JsonSerializer=context.JsonSerializer,
        PickleSerializer=context.PickleSerializer,
        DictState=state_store.DictState,
        Event=events.Event,
        StartEvent=events.StartEvent,
        StopEvent=events.StopEvent,
        InputRequiredEvent=events.InputRequiredEvent,
        HumanResponseEvent=events.HumanResponseEvent,
        StepFailedEvent=events.StepFailedEvent,
    )


@pytest.fixture(
    params=[
        pytest.param(pkg, marks=pytest.mark.upstream) if pkg == REFERENCE else pkg
        for pkg in IMPLEMENTATIONS
    ]
)
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The implementation under test: upstream ``workflows``, or ``celery_workflows``
    in-process on the in-memory store, or on the embedded SQLite store (JSON payloads)."""
    if request.param == "celery_workflows-celery":
        yield from _on_celery(request)
        return
    if request.param != "celery_workflows-sqlite":
        yield load_impl(request.param)
        return
    name = request.node.originalname
    if name in JSON_STORE_DIFFERENCES:
        request.applymarker(pytest.mark.xfail(reason=JSON_STORE_DIFFERENCES[name], strict=True))
    if name in SQLITE_TIMING:
        request.applymarker(pytest.mark.xfail(reason=SQLITE_TIMING[name], strict=False))
    with embedded_sqlite_default(tmp_path):
        yield load_impl("celery_workflows")


def _on_celery(request: pytest.FixtureRequest) -> Iterator[SimpleNamespace]:
    from celery_workflows.runtime import local

    name = request.node.originalname
    if name in CELERY_DIFFERENCES:
        request.applymarker(pytest.mark.xfail(reason=CELERY_DIFFERENCES[name], strict=True))
    if name in CELERY_TIMING:
        request.applymarker(pytest.mark.xfail(reason=CELERY_TIMING[name], strict=False))
    runtime = request.getfixturevalue("inthread_celery_runtime")
    local.default_runtime_override = runtime
    try:
        yield load_impl("celery_workflows")
    finally:
        local.default_runtime_override = None


@pytest.fixture(scope="session")
def inthread_celery_runtime(
    create_postgres_database: Callable[[], str], redis_url: str
) -> Iterator[Any]:
    """A CeleryRuntime over real Redis and PostgreSQL, with a worker in this process.

    The suite defines its workflows inside the tests, so a worker in another process could
    not import them; a real Celery worker (threads pool) runs in a thread here instead.
    """
    import redis
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from celery_workflows.celery import CeleryRuntime

    broker = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("CW_TEST_CONFORMANCE_REDIS_DB", "7")
    redis.Redis.from_url(broker).flushdb()
    app = Celery("conformance", broker=broker)
    app.conf.broker_connection_retry_on_startup = True
    runtime = CeleryRuntime(
        app,
        database_url=create_postgres_database(),
        lease_seconds=10,
        heartbeat_seconds=2,
        sweep_interval=0.5,
        # Every run streams its step events, as upstream's do: a test may open its stream
        # with internal events after the run's only step ended. (By default a Celery run
        # writes them once a reader asks: tests/integration/test_run_page.py.)
        step_events=True,
    )
    # Workflows defined by the tests after this worker started reach it by themselves.
    with start_worker(app, pool="threads", concurrency=6, perform_ping_check=False):
        yield runtime
        runtime.worker.stop()
    asyncio.run(runtime.store.close())


@pytest.fixture
def bounded() -> Callable[..., Awaitable[Any]]:
    """``await bounded(aw, timeout=5.0)``: await anything (a handler too) with a time limit."""

    async def _bounded(aw: Awaitable[T], timeout: float = WAIT_SECONDS) -> T:
        async def _await() -> T:
            return await aw

        return await asyncio.wait_for(_await(), timeout)

    return _bounded


@pytest.fixture
def drain(bounded: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[list[Any]]]:
    """``await drain(handler)``: every streamed event up to the StopEvent, time-limited."""

    async def _drain(handler: Any, timeout: float = WAIT_SECONDS) -> list[Any]:
        async def _collect() -> list[Any]:
            return [ev async for ev in handler.stream_events()]

        events: list[Any] = await bounded(_collect(), timeout)
        return events

    return _drain


@pytest.fixture
def get_impl() -> Callable[[str], SimpleNamespace]:
    """``get_impl("workflows")``: one named implementation, for tests that need both."""
    return load_impl
