"""What every runtime shares: starting runs, reading results and streams, snapshots.

A runtime = an :class:`~celery_workflows.runtime.engine.Engine` (store + dispatcher) plus
the way callers wait: on a :class:`~celery_workflows.store.changes.RunWatch` of the
store's notifier, woken after a commit of the run (by the engine in this process, by
PostgreSQL LISTEN/NOTIFY from any process), with a poll as a safety net.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .._serializers import BaseSerializer
from .._sync import run_sync
from ..context.state_store import InMemoryStateStore, StateStore
from ..errors import WorkflowCancelledByUser, WorkflowRuntimeError, WorkflowTimeoutError
from ..events import Event, StartEvent, StopEvent
from ..store.base import NewDelivery, RunRecord, RunStore
from ..store.changes import RunWatch
from .binding import Binding
from .engine import Dispatcher, Engine
from .instrumentation import TAGS_META_KEY, caller_tags
from .snapshots import build_snapshot, resume_plan
from .state import RunStateBackend
from .step_events import request_step_events

if TYPE_CHECKING:
    from ..context.context import Context
    from ..handler import WorkflowHandler
    from ..workflow import Workflow


class RunHandle:
    """The run port of a started run (what a caller's Context reaches, see
    ``context/ports.py``): the runtime, the workflow's binding and the run id."""

    def __init__(self, runtime: BaseRuntime, binding: Binding, run_id: str) -> None:
        self.runtime = runtime
        self.binding = binding
        self.run_id = run_id
        self.workflow_name = binding.name
        self.store: StateStore[Any] = runtime.state_store(binding, run_id)
        #: What keeps the run's stored data alive while this port is (see retention.py).
        self.pin: object = None

    def status(self) -> str:
        """The run's committed status."""
        return self.runtime.get_run(self.run_id).status

    def is_running(self) -> bool:
        """True while the run has not ended."""
        return self.runtime.is_running(self.run_id)

    def snapshot(self, serializer: BaseSerializer, include_state: bool) -> dict[str, Any]:
        """``ctx.to_dict()`` of the run."""
        return self.runtime.snapshot(
            self.binding, self.run_id, serializer, include_state=include_state
        )

    def send_event(self, event: Event, step: str | None) -> None:
        """Send an event into the run."""
        self.runtime.send_event(self.binding, self.run_id, event, step)

    async def running_steps(self) -> list[str]:
        """Steps with a running delivery."""
        return await self.runtime.running_steps(self.run_id)

    def stream(self, internal: bool = False) -> AsyncIterator[Event]:
        """The run's event stream (``internal``: the reader wants step events too)."""
        return self.runtime.stream(self.binding, self.run_id, internal=internal)

    def result_event(self) -> StopEvent:
        """The finished run's StopEvent."""
        return self.runtime.result_event(self.binding, self.run_id)

    async def result(self) -> StopEvent:
        """Wait for the run to end: its StopEvent, or raise what it ended with."""
        return await self.runtime.result(self.binding, self.run_id)

    async def send(self, event: Event, step: str | None) -> None:
        """Send an event into the run (committed when this returns)."""
        if step is not None:
            self.binding.check_target(step, event)
        await self.runtime.engine.send_event(self.binding, self.run_id, event, step)

    async def cancel(self) -> None:
        """Cancel the run (committed when this returns)."""
        await self.runtime.cancel(self.binding, self.run_id)


class BaseRuntime:
    """Runs workflows through one engine; subclasses choose dispatcher and waiting."""

    #: Seconds between store polls while waiting when the store cannot push the commits
    #: of other processes (SQLite); None = wait for in-process wake-ups only.
    poll_interval: float | None = None
    #: Seconds between store reads while waiting when the store pushes every commit
    #: (PostgreSQL): only a notification lost while its listener reconnected waits this.
    safety_poll: float = 1.0

    def __init__(
        self,
        make_store: Callable[[], RunStore],
        dispatcher: Dispatcher,
        *,
        per_process: bool = False,
        **engine_options: Any,
    ) -> None:
        """``make_store`` builds the run store on first use; with ``per_process`` again in
        each forked process (connections and threads do not survive ``fork()``)."""
        self.dispatcher = dispatcher
        self._make_store = make_store
        self._per_process = per_process
        self._engine_options = engine_options
        self._built: tuple[int, RunStore, Engine] | None = None
        self._lock = threading.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    # --- this process's store and engine ---------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine (built on first use, and after a fork if per process)."""
        return self._ensure()[2]

    @property
    def store(self) -> RunStore:
        """This process's run store."""
        return self._ensure()[1]

    def _ensure(self) -> tuple[int, RunStore, Engine]:
        built = self._built
        if built is not None and (not self._per_process or built[0] == os.getpid()):
            return built
        with self._lock:
            built = self._built
            if built is None or (self._per_process and built[0] != os.getpid()):
                store = self._make_store()
                engine = Engine(store, self.dispatcher, **self._engine_options)
                engine.listeners.append(self)
                self._configure(engine)
                built = self._built = (os.getpid(), store, engine)
            return built

    def _configure(self, engine: Engine) -> None:
        """Subclasses set up a new engine here (hooks, workflows already registered)."""

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread of the parent may have held it)."""
        self._lock = threading.Lock()

    # --- registration ----------------------------------------------------------------

    def binding(self, workflow: Workflow) -> Binding:
        """The engine's binding of ``workflow`` (registered on first use)."""
        found = self.engine.bindings.get(workflow.workflow_name)
        if found is not None and found.workflow is workflow:
            return found
        return self.engine.register(workflow)

    # --- wake-ups ----------------------------------------------------------------------

    def changed(self, run_id: str, *, finished: bool = False) -> None:
        """Listener hook: wake whoever waits on ``run_id`` in this process (any thread or
        loop), before a notification from the database would."""
        self.store.watch().wake(run_id)

    def _watch(self, run_id: str) -> RunWatch:
        """Subscribe to ``run_id``'s changes; close it (``with``) when done waiting.

        Subscribed before the store is read, and cleared before each read, so a change
        between a read and the wait is never missed.
        """
        return self.store.watch().subscribe(run_id)

    def patience(self, watch: RunWatch) -> float | None:
        """How long a waiter sleeps without a wake-up before it reads the store anyway."""
        if self.poll_interval is None:
            return None  # every commit happens in this process and wakes it
        return self.safety_poll if watch.notifier.pushes else self.poll_interval

    async def _wait(self, watch: RunWatch) -> None:
        await watch.wait(self.patience(watch))

    def describe_waiting(self) -> str:
        """How callers wait on this runtime's store (for logs and the benchmark)."""
        notifier = self.store.watch()
        if self.poll_interval is None:
            return "woken by this process's commits"
        if notifier.pushes:
            return f"woken by notifications, safety poll every {self.safety_poll:g} s"
        return f"polls the store every {self.poll_interval * 1000:g} ms"

    def _inline(self) -> bool:
        return self.store.never_suspends

    # --- runs --------------------------------------------------------------------------

    def start(
        self,
        workflow: Workflow,
        ctx: Context[Any],
        start_event: StartEvent | None,
        run_id: str | None,
    ) -> WorkflowHandler:
        """Create the run for ``ctx`` and return its handler (the run goes on in workers)."""
        from ..handler import WorkflowHandler

        binding = self.binding(workflow)
        run_id = run_id or uuid.uuid4().hex
        pre = ctx._not_started()
        resume: list[Any] = []
        meta: dict[str, Any] = {}
        if pre is not None:
            state = pre.backend.current
            if pre.snapshot is not None and pre.snapshot.is_running:
                resume, meta = resume_plan(binding, run_id, pre.snapshot)
                start_event = None
        else:
            state = run_sync(lambda: ctx.store._backend.read(), inline=self._inline())
        # The caller's instrument tags reach the run's steps in whichever process they run.
        tags = caller_tags()
        if tags:
            meta = {**meta, TAGS_META_KEY: tags}
        self._create(binding, start_event, run_id, state, resume, meta)
        port = RunHandle(self, binding, run_id)
        ctx._attach(port)
        return WorkflowHandler(port, ctx)

    def get_handler(self, run_id: str) -> WorkflowHandler:
        """A handle on an existing run, from any process (status, result, stream, send)."""
        from ..context.context import Context
        from ..handler import WorkflowHandler

        run = self.get_run(run_id)
        binding = self.engine.binding_for(run.workflow_name)
        ctx: Context[Any] = Context(binding.workflow)
        port = RunHandle(self, binding, run_id)
        ctx._attach(port)
        return WorkflowHandler(port, ctx)

    def _create(
        self,
        binding: Binding,
        start_event: StartEvent | None,
        run_id: str,
        state: Any,
        resume: list[Any],
        meta: dict[str, Any],
    ) -> None:
        """Create the run (RunConflictError: the run id names another start)."""
        timeout = binding.workflow._timeout
        # The transaction may run on a helper thread (sync bridge); publishing happens
        # here, after it committed, so the dispatcher sees the caller's loop.
        _, created, deliveries = run_sync(
            lambda: self.engine.start(
                binding,
                start_event,
                run_id=run_id,
                state=state,
                timeout=timeout,
                resume=resume,
                meta=meta,
                publish=False,
            ),
            inline=self._inline(),
        )
        if created:
            self._created(binding, run_id, deliveries)

    def _created(self, binding: Binding, run_id: str, deliveries: list[NewDelivery]) -> None:
        """A run was just created (not found again under its id): publish its start."""
        self.engine.publish(binding, run_id, deliveries)

    def state_store(self, binding: Binding, run_id: str) -> StateStore[Any]:
        """The caller's view of a run's state (writes lock the run row, unfenced)."""
        backend = RunStateBackend(self.store, run_id, binding.codec, binding.state_type)
        return InMemoryStateStore.over(backend)

    def get_run(self, run_id: str) -> RunRecord:
        """The committed run row, from sync code."""
        return run_sync(lambda: self.store.get_run(run_id), inline=self._inline())

    def is_running(self, run_id: str) -> bool:
        """True while the run is not completed, failed or cancelled."""
        return not self.get_run(run_id).finished

    def snapshot(
        self,
        binding: Binding,
        run_id: str,
        serializer: BaseSerializer,
        *,
        include_state: bool = True,
    ) -> dict[str, Any]:
        """``ctx.to_dict()`` of a started run."""
        return build_snapshot(binding, self.store, run_id, serializer, include_state=include_state)

    def send_event(self, binding: Binding, run_id: str, event: Event, step: str | None) -> None:
        """Send an event into a run from sync code (errors about the target raise here)."""
        if step is not None:
            binding.check_target(step, event)
        self.submit(self.engine.send_event(binding, run_id, event, step))

    def submit(self, coro: Any) -> None:
        """Run a coroutine in the background (or now, without a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)
            return
        task = loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def running_steps(self, run_id: str) -> list[str]:
        """Steps with a running delivery in ``run_id``."""
        running = await self.store.list_deliveries(run_id, ["running"])
        return sorted({d.step for d in running})

    async def cancel(self, binding: Binding, run_id: str) -> None:
        """Cancel the run."""
        await self.engine.cancel(binding, run_id)

    async def stream(
        self, binding: Binding, run_id: str, after_seq: int = 0, *, internal: bool = False
    ) -> AsyncIterator[Event]:
        """Stream entries after ``after_seq`` until the run's final event (``internal``:
        step events asked for, see ``step_events``)."""
        if internal and not self.engine.step_events:
            await request_step_events(self.store, run_id)
        seq = after_seq
        # Closed when the consumer stops (aclose, cancellation, a client gone) too.
        with self._watch(run_id) as watch:
            while True:
                watch.clear()
                entries = await self.store.read_stream(run_id, seq)
                for entry in entries:
                    seq = entry.seq
                    event = binding.codec.decode_event(entry.event)
                    yield event
                    if isinstance(event, StopEvent):
                        return
                if not entries:
                    run = await self.store.get_run(run_id)
                    if run.finished and not await self.store.read_stream(run_id, seq):
                        return
                    await self._wait(watch)

    async def result(self, binding: Binding, run_id: str) -> StopEvent:
        """Wait for the run to finish: its StopEvent, or the error it ended with."""
        with self._watch(run_id) as watch:
            while True:
                watch.clear()
                run = await self.store.get_run(run_id)
                if run.finished:
                    return self.outcome(binding, run)
                await self._wait(watch)

    def result_event(self, binding: Binding, run_id: str) -> StopEvent:
        """The StopEvent of a finished run, from sync code."""
        return self.outcome(binding, self.get_run(run_id))

    def outcome(self, binding: Binding, run: RunRecord) -> StopEvent:
        """A finished run's StopEvent, or raise what it failed with (upstream's errors)."""
        if run.status == "completed":
            results = self.engine.live_results
            live = results.get(run.run_id) if results is not None else None
            event = live if live is not None else binding.codec.decode_event(run.result)
            assert isinstance(event, StopEvent)
            return event
        error = run.error or {}
        if run.status == "cancelled":
            raise WorkflowCancelledByUser()
        if error.get("kind") == "timeout":
            raise WorkflowTimeoutError(error.get("message", "Operation timed out"))
        if error.get("kind") == "step" or "exception_type" in error:
            raise binding.codec.decode_error(error)
        if run.status == "failed":
            raise WorkflowRuntimeError(
                error.get("message") or f"run {run.run_id!r} failed: {error}"
            )
        raise WorkflowRuntimeError(f"run {run.run_id!r} is still {run.status}")
