"""StepStateChanged on request: a run streams its steps' states once someone asks.

Upstream streams StepStateChanged (a step RUNNING, then NOT_RUNNING with the event it
produced) for whoever reads a run's stream with ``expose_internal=True``. The in-process
runtime always writes them (``Engine.step_events``); a Celery runtime would pay two stream
writes per step hop for events nobody reads. So by default a run writes them only after a
reader asked: opening a stream with internal events sets a flag in the run's meta, and a
step's completion, which holds the run row anyway, reads it there: no read and no write
is added to a run no one follows that way.

A run that asked writes both events of a step at the step's end (its completion is the
first moment a worker sees the flag without another read); ``CeleryRuntime(step_events=
True)`` writes RUNNING when the step starts, as in-process, for every run.
"""

from __future__ import annotations

from typing import Any

from ..events import Event, StepState
from ..store.base import DeliveryRecord, RunRecord, RunStore, RunTxn
from .binding import Binding
from .transitions import step_state
from .writes import copy_meta

__all__ = ["STEP_EVENTS_KEY", "append_running", "request_step_events", "wants_step_events"]

#: The run-meta key that says a reader asked for the run's step events.
STEP_EVENTS_KEY = "step_events"


def wants_step_events(run: RunRecord) -> bool:
    """True once a reader asked ``run`` for its step events."""
    return isinstance(run.meta, dict) and bool(run.meta.get(STEP_EVENTS_KEY))


async def request_step_events(store: RunStore, run_id: str) -> bool:
    """Ask ``run_id`` to stream its step events from now on (one locked write, skipped
    when the run already does or has finished). True if the flag is set."""
    run = await store.get_run(run_id)
    if wants_step_events(run):
        return True
    if run.finished:
        return False
    async with store.locked(run_id) as txn:
        if txn.run.finished:
            return False
        if not wants_step_events(txn.run):
            meta = copy_meta(txn.run.meta)
            meta[STEP_EVENTS_KEY] = True
            txn.set_meta(meta)
    return True


async def append_running(
    txn: RunTxn, binding: Binding, delivery: DeliveryRecord, event: Event
) -> None:
    """In a step's completion: the RUNNING that its claim did not write (the run asked
    for step events after the claim, or the runtime writes them only on request)."""
    running: Any = binding.codec.encode_event(step_state(delivery, StepState.RUNNING, event))
    await txn.append_stream(running, f"{delivery.delivery_id}:a{delivery.attempt}:running")
