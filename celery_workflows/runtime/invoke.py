"""Calling a step function: build its arguments, run it (sync steps in a thread)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from typing import TYPE_CHECKING, Any

from ..context.context import current_step_context
from ..events import Event

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


async def call_step(inv: Invocation, ctx: Context[Any], event: Event) -> Any:
    """Run the step body once and return what it returned."""
    func = inv.binding.functions[inv.spec.name]
    kwargs = await _arguments(inv, ctx, event)
    token = current_step_context.set(ctx)
    try:
        if inv.spec.is_async:
            return await func(**kwargs)
        # Sync steps run in a thread so they do not stall other steps of the loop;
        # the copied context keeps Context.get_step_context() working there.
        call = functools.partial(contextvars.copy_context().run, func, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)
    finally:
        current_step_context.reset(token)
