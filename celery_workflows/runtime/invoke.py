"""Calling a step function: build its arguments, run it (sync steps in a thread).

Each call is an instrumentation span (``llama-index-instrumentation``, as upstream): a
span a step opens nests under its step's span, and the spans carry the tags of
:func:`~celery_workflows.runtime.instrumentation.step_tags`. A step cancelled with its run
leaves its span as an exit, as upstream's.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import weakref
from typing import TYPE_CHECKING, Any

from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.dispatcher import instrument_tags

from ..context.context import StepContextRef, current_step_context
from ..events import Event
from .instrumentation import SpanCancelledEvent, run_tags, step_tags
from .step_context import CollectNeeded, StepSuspended

if TYPE_CHECKING:
    from ..context.context import Context
    from .step_context import Invocation


async def _arguments(inv: Invocation, ctx: Context[Any], event: Event) -> dict[str, Any]:
    spec = inv.spec
    codec = inv.binding.codec
    kwargs: dict[str, Any] = {}
    if spec.context_parameter is not None:
        kwargs[spec.context_parameter] = ctx
    if spec.is_collect and spec.collection_name is not None:
        batch = inv.delivery.extra.get("batch", [inv.delivery.event])
        kwargs[spec.collection_name] = [codec.decode_event(p) for p in batch]
    elif spec.is_join:
        joined = inv.delivery.extra["join"]
        for param, _ in spec.event_params:
            kwargs[param] = codec.decode_event(joined[param])
    else:
        kwargs[spec.event_params[0][0]] = event
    manager = inv.binding.workflow._resource_manager
    # One scope for all of the step's parameters: an uncached resource asked for twice
    # (directly or as a dependency) is built once for this invocation, as upstream.
    with manager.resolution_scope():
        for name, descriptor in spec.resource_params:
            kwargs[name] = await manager.get(descriptor)
    return kwargs


_dispatcher = get_dispatcher("celery_workflows.step")


async def call_step(inv: Invocation, ctx: Context[Any], event: Event) -> Any:
    """Run the step body once, in its span, and return what it returned."""
    func = inv.binding.functions[inv.spec.name]
    kwargs = await _arguments(inv, ctx, event)
    run_id = inv.delivery.run_id
    caller = await run_tags.of(inv.engine.store, run_id, inv.delivery.extra)
    tags = step_tags(run_id, event, caller)
    ref = StepContextRef(ctx)
    token = current_step_context.set(ref)
    try:
        with instrument_tags(tags):
            if inv.spec.is_async:
                return await _spanned_async(func, kwargs)
            # Sync steps run in a thread so they do not stall other steps of the loop;
            # the copied context keeps Context.get_step_context() and the span there.
            spanned = _dispatcher.span(func)
            call = functools.partial(contextvars.copy_context().run, spanned, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(None, call)
    finally:
        ref.ctx = None  # copies of the variable left in timers keep nothing alive
        current_step_context.reset(token)


_signatures: weakref.WeakKeyDictionary[Any, inspect.Signature] = weakref.WeakKeyDictionary()


def _signature(func: Any) -> inspect.Signature:
    found = _signatures.get(func)
    if found is None:
        found = _signatures[func] = inspect.signature(func)
    return found


async def _spanned_async(func: Any, kwargs: dict[str, Any]) -> Any:
    # wait_for_event and collect_events stop a step with a control-flow exception, and a
    # cancelled run stops it with CancelledError: each leaves the span as a plain exit,
    # not as an error, and is raised again after it.
    stopped: list[BaseException] = []

    @functools.wraps(func)
    async def body(**arguments: Any) -> Any:
        try:
            return await func(**arguments)
        except (StepSuspended, CollectNeeded) as control:
            stopped.append(control)
            return None
        except asyncio.CancelledError as cancelled:
            _dispatcher.event(SpanCancelledEvent(reason="step cancelled"))
            stopped.append(cancelled)
            return None

    # The span binds the call to the signature at every call; the step's is computed once.
    body.__signature__ = _signature(func)  # type: ignore[attr-defined]
    result = await _dispatcher.span(body)(**kwargs)
    if stopped:
        raise stopped[0]
    return result
