"""``CeleryRuntime``: runs workflows on Celery workers, durably, over a SQL run store.

``Workflow(runtime=CeleryRuntime(app, database_url=...))`` compiles each step into a task
named ``celery_workflows.step:<workflow_name>.<step_name>``. Workers are plain
``celery -A proj worker`` processes; each runs the same engine as the in-process runtime.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from ..runtime.base import BaseRuntime
from ..runtime.binding import Binding
from ..runtime.engine import Engine
from ..store.base import RunStore
from ..store.sql import SqlRunStore
from ..store.sql.migrate import DATABASE_URL_ENV
from ..store.sql.store import DEFAULT_MAX_STATE_BYTES
from .dispatch import CeleryDispatcher, task_name
from .sweeper import Sweeper, sweeper_bootstep
from .worker import Worker

if TYPE_CHECKING:
    from ..workflow import Workflow

#: Environment variable read when no ``database_url`` is given (the migration command's).
DATABASE_ENV = DATABASE_URL_ENV
#: The embedded default: a SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///celery_workflows.db"

#: Settings a durable runtime needs: JSON only (no pickle from the broker), ack after the
#: task ran, requeue when the worker process dies, one message at a time per process.
SAFE_SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def apply_safe_settings(app: Celery) -> None:
    """Apply :data:`SAFE_SETTINGS`, warning about each user setting it overrides."""
    changed = app.conf.changes
    for key, safe in SAFE_SETTINGS.items():
        if key in changed and changed[key] != safe:
            warnings.warn(
                f"celery_workflows sets Celery's {key}={safe!r} (was {changed[key]!r}): "
                "durable runs need it",
                RuntimeWarning,
                stacklevel=3,
            )
        app.conf[key] = safe


class CeleryRuntime(BaseRuntime):
    """Runs workflows on Celery with their runs in a SQL database.

    Args:
        app: the Celery app whose workers run the steps.
        database_url: SQLAlchemy URL of the run store (PostgreSQL or SQLite); default the
            ``CELERY_WORKFLOWS_DATABASE_URL`` environment variable, then a SQLite file.
        lease_seconds: how long a step attempt owns its delivery without a heartbeat.
        heartbeat_seconds: how often a running step extends its lease.
        sweep_interval: how often each worker looks for deliveries to publish again.
        stale_after: seconds after which a pending delivery whose queue is empty is
            presumed to have lost its message and is published again.

    The timing defaults are chosen together: a SIGKILLed worker's running step is run
    again within ``lease_seconds + sweep_interval`` (7 s) and the messages it had
    prefetched within ``stale_after + sweep_interval`` (6 s), under the 10 s the crash
    tests hold them to; three heartbeats fit in a lease, so one slow beat loses nothing.
        max_crashes: attempts that died without a result before a delivery is poison.
        max_event_bytes: largest event (as JSON) a step may emit; a larger one fails
            the step, naming run, step and event type. None: no limit.
        max_state_bytes: largest state (as JSON) a run may keep; an edit over it fails
            its step, naming run, step, size and limit. None: no limit. Default 10 MB.
        create_schema: migrate the database to the newest schema on first use.
        step_events: stream StepStateChanged for every run, RUNNING as a step starts (two
            stream writes a step). By default a run writes them only once a reader asks
            (``stream_events(expose_internal=True)``, the server's ``include_internal``),
            both at the step's end: see :mod:`celery_workflows.runtime.step_events`.
    """

    poll_interval = 0.05

    def __init__(
        self,
        app: Celery,
        database_url: str | None = None,
        *,
        lease_seconds: float = 6.0,
        heartbeat_seconds: float = 2.0,
        sweep_interval: float = 1.0,
        stale_after: float = 5.0,
        max_crashes: int = 3,
        max_event_bytes: int | None = 1_000_000,
        max_state_bytes: int | None = DEFAULT_MAX_STATE_BYTES,
        create_schema: bool = True,
        step_events: bool = False,
    ) -> None:
        self.app = app
        self.database_url = database_url or os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sweep_interval = sweep_interval
        self.stale_after = stale_after
        self.max_crashes = max_crashes
        self.max_event_bytes = max_event_bytes
        self.max_state_bytes = max_state_bytes
        self.create_schema = create_schema
        self.step_events = step_events
        super().__init__(
            self._make_sql_store,
            CeleryDispatcher(app),
            per_process=True,
            lease_seconds=lease_seconds,
        )
        #: The workflow registered last under each name (what a new process registers).
        self._workflows: dict[str, Workflow] = {}
        self.worker = Worker(self)
        self.sweeper = Sweeper(self)
        #: Workers of this process that run (set by the bootstep): a workflow registered
        #: after they started must reach their consumers too.
        self.running_workers: list[Any] = []
        apply_safe_settings(app)
        worker_process_init.connect(self.worker.on_process_init, weak=False)
        # A prefork child stops its heartbeat thread before it exits (no thread left
        # submitting database calls while the interpreter shuts down).
        worker_process_shutdown.connect(self.worker.on_process_shutdown, weak=False)
        # Threads and solo pools: after a warm shutdown drained the pool (steps still
        # running keep their leases until they end).
        worker_shutdown.connect(self.worker.on_process_shutdown, weak=False)
        # Every worker of the app sweeps, whatever its pool; a worker built before this
        # runtime (rare) does not: see the README.
        app.steps["worker"].add(sweeper_bootstep(self))

    # --- per-process store and engine ------------------------------------------------------

    def _make_sql_store(self) -> RunStore:
        return SqlRunStore(
            self.database_url,
            create_schema=self.create_schema,
            max_state_bytes=self.max_state_bytes,
        )

    def _configure(self, engine: Engine) -> None:
        engine.heartbeat = self.worker.heartbeat
        engine.max_crashes = self.max_crashes
        engine.max_event_bytes = self.max_event_bytes
        engine.step_events = self.step_events
        for workflow in self._workflows.values():
            engine.register(workflow)

    # --- workflows -----------------------------------------------------------------------

    def binding(self, workflow: Workflow) -> Binding:
        """The binding of ``workflow``; the first use registers it and makes one Celery
        task per step."""
        found = self.engine.bindings.get(workflow.workflow_name)
        if found is not None and found.workflow is workflow:
            return found
        self._workflows[workflow.workflow_name] = workflow
        for step in workflow._step_specs():
            self._register_task(workflow.workflow_name, step)
        binding = self.engine.register(workflow)
        for worker in list(self.running_workers):
            # Celery's consumer maps task names to handlers when it starts; a task added
            # later is "unregistered" to it until the map is rebuilt.
            consumer = getattr(worker, "consumer", None)
            if consumer is not None and getattr(consumer, "strategies", None) is not None:
                consumer.update_strategies()
        return binding

    def _register_task(self, workflow_name: str, step: str) -> None:
        # A workflow registered again under the same name (a new instance, a class
        # redefined) keeps its tasks: the task body looks the step up when it runs.
        name = task_name(workflow_name, step)
        if name in self.app.tasks:
            return
        # shared=False: the task is this runtime's (its database, its engine); a shared
        # task would be added to every Celery app of the process, other runtimes' too.
        options = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}
        self.app.task(name=name, shared=False, **options)(self._step_body(workflow_name, step))

    def _step_body(self, workflow_name: str, step: str) -> Any:
        # ``run_id`` is shown to operators (Flower, ``celery inspect``) and nothing else:
        # the delivery id names the run in the store. Messages published before it was
        # sent have no such keyword, and are run alike.
        def run_step(delivery_id: Any, run_id: Any = None) -> None:
            # num_workers of the binding this process runs (not of the first registered).
            binding = self.engine.bindings.get(workflow_name)
            spec = binding.specs.get(step) if binding is not None else None
            max_running = spec.num_workers if spec is not None else None
            self.worker.step_task(delivery_id, max_running=max_running, workflow_name=workflow_name)

        return run_step
