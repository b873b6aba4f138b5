"""The faces of a Context under upstream's module names: ``ctx._face`` is a
``PreContext`` before the run, an ``ExternalContext`` in the caller's hands and an
``InternalContext`` inside a step, so ``isinstance`` checks written for upstream hold.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest

FACES = {
    "pre": ("pre_context", "PreContext"),
    "external": ("external_context", "ExternalContext"),
    "internal": ("internal_context", "InternalContext"),
}


def face_class(impl: SimpleNamespace, face: str) -> type:
    """The class of one face, imported from the implementation's upstream module path."""
    module, name = FACES[face]
    cls: type = getattr(importlib.import_module(f"{impl.name}.context.{module}"), name)
    return cls


def faces_of(impl: SimpleNamespace, ctx: Any) -> set[str]:
    """Which faces ``ctx._face`` is an instance of."""
    return {face for face in FACES if isinstance(ctx._face, face_class(impl, face))}


def seeing_workflow(impl: SimpleNamespace, seen: dict[str, Any]) -> Any:
    """One step that records the faces of its context and of the step context."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Seeing(impl.Workflow):
        @step
        async def look(self, ctx: Context, ev: StartEvent) -> StopEvent:
            seen["step"] = faces_of(impl, ctx)
            seen["step_context"] = faces_of(impl, Context.get_step_context())
            seen["store"] = ctx._face.store is not None
            return StopEvent(result="seen")

    return Seeing(timeout=10)


async def test_a_fresh_context_has_the_pre_context_face(impl: SimpleNamespace) -> None:
    ctx = impl.Context(seeing_workflow(impl, {}))
    assert faces_of(impl, ctx) == {"pre"}
    assert ctx._face.is_running is False


async def test_the_handlers_context_has_the_external_face(
    impl: SimpleNamespace, bounded: Any
) -> None:
    seen: dict[str, Any] = {}
    handler = seeing_workflow(impl, seen).run()
    assert faces_of(impl, handler.ctx) == {"external"}
    assert await bounded(handler) == "seen"
    assert faces_of(impl, handler.ctx) == {"external"}
    assert handler.ctx._face.is_running is False
    assert isinstance(handler.ctx._face.get_result(), impl.StopEvent)


async def test_a_step_sees_the_internal_face(impl: SimpleNamespace, bounded: Any) -> None:
    seen: dict[str, Any] = {}
    await bounded(seeing_workflow(impl, seen).run())
    assert seen == {"step": {"internal"}, "step_context": {"internal"}, "store": True}


async def test_a_context_passed_to_run_becomes_external(
    impl: SimpleNamespace, bounded: Any
) -> None:
    workflow = seeing_workflow(impl, {})
    ctx = impl.Context(workflow)
    handler = workflow.run(ctx=ctx)
    assert handler.ctx is ctx
    assert faces_of(impl, ctx) == {"external"}
    await bounded(handler)


@pytest.mark.parametrize("face", sorted(FACES))
def test_the_faces_are_generic_like_upstream(impl: SimpleNamespace, face: str) -> None:
    cls: Any = face_class(impl, face)
    params = (impl.DictState, Any) if face == "external" else (impl.DictState,)
    assert cls[params if len(params) > 1 else params[0]] is not None


async def test_ctx_store_is_an_in_memory_state_store_everywhere(
    impl: SimpleNamespace, bounded: Any
) -> None:
    """``isinstance(ctx.store, InMemoryStateStore)`` holds before the run, inside a step
    and in the caller's hands, as upstream (wherever the state really lives)."""
    store_class = importlib.import_module(f"{impl.name}.context.state_store").InMemoryStateStore
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Stores(impl.Workflow):
        @step
        async def look(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("n", 1)
            return StopEvent(result=isinstance(ctx.store, store_class))

    workflow = Stores(timeout=10)
    ctx = impl.Context(workflow)
    assert isinstance(ctx.store, store_class)
    handler = workflow.run(ctx=ctx)
    assert await bounded(handler) is True
    assert isinstance(handler.ctx.store, store_class)
    assert await handler.ctx.store.get("n") == 1
