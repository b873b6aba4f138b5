"""The in-process runtime: the default when a workflow is given no runtime.

Same engine as the Celery runtime, over the in-memory run store, with an inline
dispatcher that runs each delivery as an asyncio task of the current loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..store.base import NewDelivery, RunStore, utcnow
from ..store.memory import InMemoryRunStore
from .base import BaseRuntime, RunHandle
from .binding import Binding
from .engine import Dispatch, Engine
from .retention import DEFAULT_KEEP_FINISHED, FinishedRuns, IdleWorkflows

if TYPE_CHECKING:
    from ..context.context import Context
    from ..events import StartEvent
    from ..handler import WorkflowHandler
    from ..workflow import Workflow

log = logging.getLogger("celery_workflows.local")


class InlineDispatcher:
    """Executes deliveries as tasks of the running loop, ``num_workers`` at a time per step."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        self.tasks: dict[str, set[asyncio.Task[None]]] = {}
        self._timers: dict[str, set[asyncio.TimerHandle]] = {}

    def dispatch(self, items: Sequence[Dispatch]) -> None:
        """Schedule each delivery now, or at its ``not_before``."""
        loop = asyncio.get_running_loop()
        for item in items:
            delay = (item.not_before - utcnow()).total_seconds() if item.not_before else 0.0
            if delay > 0:
                # An empty context: a timer made inside a step must not keep that step's
                # Context alive until it fires (a wait's timeout may be hours away).
                holder: list[asyncio.TimerHandle] = []
                timer = loop.call_later(
                    delay, self._fire, item, holder, context=contextvars.Context()
                )
                holder.append(timer)
                self._timers.setdefault(item.run_id, set()).add(timer)
            else:
                self._spawn(item)

    def _fire(self, item: Dispatch, holder: list[asyncio.TimerHandle]) -> None:
        timers = self._timers.get(item.run_id)
        if timers is not None:
            timers.difference_update(holder)
            if not timers:
                del self._timers[item.run_id]
        holder.clear()
        self._spawn(item)

    def _spawn(self, item: Dispatch) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(item))
        self.tasks.setdefault(item.run_id, set()).add(task)
        task.add_done_callback(functools.partial(self._done, item.run_id))

    def _done(self, run_id: str, task: asyncio.Task[None]) -> None:
        runs = self.tasks.get(run_id)
        if runs is not None:
            runs.discard(task)
            if not runs:
                del self.tasks[run_id]

    async def _execute(self, item: Dispatch) -> None:
        assert self.engine is not None
        binding = self.engine.bindings.get(item.workflow_name)
        workers = (
            binding.specs[item.step].num_workers if binding and item.step in binding.specs else 1
        )
        key = (item.run_id, item.step)
        limit = self._limits.setdefault(key, asyncio.Semaphore(workers))
        async with limit:
            try:
                await self.engine.execute(item.delivery_id, workflow_name=item.workflow_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "delivery %s of run %s crashed the engine", item.delivery_id, item.run_id
                )

    def cancel_run(self, run_id: str) -> None:
        """Cancel the tasks still executing deliveries of ``run_id``."""
        current = asyncio.current_task()
        for task in list(self.tasks.pop(run_id, ())):
            if task is not current:
                task.cancel()
        self.forget(run_id)

    def forget(self, run_id: str) -> None:
        """Drop the per-run bookkeeping of a run that ended (deliveries still waiting for
        their time are not sent). Its running tasks stay known until they end: a run
        cancelled or timed out ends before :meth:`cancel_run` stops them."""
        for timer in self._timers.pop(run_id, ()):
            timer.cancel()
        for key in [k for k in self._limits if k[0] == run_id]:
            del self._limits[key]


class LocalRuntime(BaseRuntime):
    """Runs workflows in this process, in the current event loop (no servers).

    Args:
        store: the run store (default: a new in-memory store).
        keep_finished: how many of the newest finished runs the in-memory store keeps
            (readable by ``get_handler(run_id)`` with nothing else referring to them);
            older ones are kept only by their live handlers and contexts, so a
            long-lived caller does not grow.
    """

    def __init__(
        self, store: RunStore | None = None, *, keep_finished: int = DEFAULT_KEEP_FINISHED
    ) -> None:
        run_store = store or InMemoryRunStore()
        self.dispatcher: InlineDispatcher = InlineDispatcher()
        super().__init__(lambda: run_store, self.dispatcher)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._active: dict[str, set[str]] = defaultdict(set)
        self._queued: dict[str, list[tuple[Binding, str]]] = defaultdict(list)
        self._workflow_of: dict[str, str] = {}  # unfinished run id -> workflow name
        #: Finished runs the in-memory store may forget (None: a store on disk keeps all).
        live = isinstance(run_store, InMemoryRunStore)
        self._retained = FinishedRuns(keep_finished) if live else None
        self._idle = IdleWorkflows()

    def _configure(self, engine: Engine) -> None:
        self.dispatcher.engine = engine
        engine.step_events = True
        engine.live_results = OrderedDict()
        engine.run_bindings = {}

    def start(
        self,
        workflow: Workflow,
        ctx: Context[Any],
        start_event: StartEvent | None,
        run_id: str | None,
    ) -> WorkflowHandler:
        """Start a run in this loop (queued while ``num_concurrent_runs`` are active)."""
        handler = super().start(workflow, ctx, start_event, run_id)
        self._pin(handler)
        binding = self.binding(workflow)
        timeout = workflow._timeout
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._timers[handler.run_id] = loop.call_later(
                timeout, self._expire, binding, handler.run_id, timeout
            )
        return handler

    def get_handler(self, run_id: str) -> WorkflowHandler:
        """A handle on a run of this process (its workflow instance must be alive)."""
        name = self.get_run(run_id).workflow_name
        idle = self._idle.get(name) if name not in self.engine.bindings else None
        if idle is not None:
            self.binding(idle)
        handler = super().get_handler(run_id)
        self._pin(handler)
        return handler

    def _pin(self, handler: WorkflowHandler) -> None:
        # The port holds the run's row: once the store released the run, its handlers
        # and contexts keep it readable, and it goes with the last of them.
        store = self.store
        if isinstance(store, InMemoryRunStore) and isinstance(handler._port, RunHandle):
            handler._port.pin = store.pin(handler.run_id)

    def _created(self, binding: Binding, run_id: str, deliveries: list[NewDelivery]) -> None:
        # Only a run just created takes a slot: a repeated start of an existing run (the
        # same run id and start) must not hold one that nothing would free.
        limit = binding.workflow._num_concurrent_runs
        active = self._active[binding.name]
        self._workflow_of[run_id] = binding.name
        if limit is not None and len(active) >= limit:
            # The run row is committed; its start delivery is published when a running
            # run of this workflow finishes (see changed()).
            self._queued[binding.name].append((binding, run_id))
            return
        active.add(run_id)
        super()._created(binding, run_id, deliveries)

    def _expire(self, binding: Binding, run_id: str, timeout: float) -> None:
        self._timers.pop(run_id, None)
        self.submit(self._expire_and_stop(binding, run_id, timeout))

    async def _expire_and_stop(self, binding: Binding, run_id: str, timeout: float) -> None:
        if await self.engine.expire(binding, run_id, timeout):
            self.dispatcher.cancel_run(run_id)

    async def cancel(self, binding: Binding, run_id: str) -> None:
        """Cancel the run and stop its in-flight steps."""
        # Its steps stop first: one inside edit_state() holds the run's lock, which the
        # cancel must take. Again after it: a step may have started in between.
        self.dispatcher.cancel_run(run_id)
        await super().cancel(binding, run_id)
        self.dispatcher.cancel_run(run_id)

    def changed(self, run_id: str, *, finished: bool = False) -> None:
        """Wake waiters; when a run ended, free its timer, concurrency slot and limits."""
        super().changed(run_id, finished=finished)
        if not finished:
            return
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        self.dispatcher.forget(run_id)
        name = self._workflow_of.pop(run_id, None)
        active = self._active.get(name) if name is not None else None
        if name is not None and active is not None and run_id in active:
            active.discard(run_id)
            self._release(name)
        if name is not None and not self._active.get(name) and not self._queued.get(name):
            self._let_go(name)
        store = self.store
        if self._retained is not None and isinstance(store, InMemoryRunStore):
            for old in self._retained.finished(run_id):
                store.release(old)
                if self.engine.live_results is not None:
                    self.engine.live_results.pop(old, None)

    def _let_go(self, workflow_name: str) -> None:
        # The binding holds the workflow instance: with no unfinished run of it left,
        # only its handlers and contexts (and the caller) should keep it alive.
        binding = self.engine.bindings.pop(workflow_name, None)
        if binding is not None:
            self._idle.put(binding.workflow)

    def _release(self, workflow_name: str) -> None:
        queue = self._queued.get(workflow_name)
        if queue:
            binding, run_id = queue.pop(0)
            self._active[workflow_name].add(run_id)
            self.submit(self._publish_held(binding, run_id))

    async def _publish_held(self, binding: Binding, run_id: str) -> None:
        pending = await self.store.list_deliveries(run_id, ["pending"])
        self.engine.publish(binding, run_id, pending)


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalRuntime] = (
    weakref.WeakKeyDictionary()
)


#: Makes the store of each loop's default runtime (None: the in-memory store).
default_store_factory: Callable[[], RunStore] | None = None


#: A runtime that workflows given no runtime use instead (test suites run the same
#: workflows on several runtimes this way).
default_runtime_override: BaseRuntime | None = None


def default_runtime() -> BaseRuntime:
    """The in-process runtime of the running event loop (one per loop)."""
    if default_runtime_override is not None:
        return default_runtime_override
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is None:
        store = default_store_factory() if default_store_factory is not None else None
        runtime = _runtimes[loop] = LocalRuntime(store)
    return runtime
