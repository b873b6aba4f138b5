"""Typed state across workflow inheritance, ``set_state`` with another model type, and
snapshots of other versions, in a run.

A subclass workflow whose steps annotate ``Context[Child]`` (Child extending the parent's
state model) runs the parent's steps on Child state; unrelated state models are refused;
``set_state`` with a parent-typed model merges its fields.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel


class Parent(BaseModel):
    """The parent workflow's state."""

    a: int = 0


class Child(Parent):
    """The child workflow's state: the parent's plus ``b``."""

    b: int = 0


class Other(BaseModel):
    """Unrelated to Parent."""

    z: int = 0


def family(impl: SimpleNamespace) -> tuple[Any, Any, Any]:
    """A workflow on Parent state, a subclass on Child state, a sibling on Other state.

    The parent's step sets ``a`` through ``set_state(Parent(...))`` and returns the class
    name and fields of the state it then reads.
    """
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class OnParent(impl.Workflow):
        @step
        async def begin(self, ctx: Context[Parent], ev: StartEvent) -> StopEvent:
            await ctx.store.set("a", 1)
            await ctx.store.set_state(Parent(a=5))
            state = await ctx.store.get_state()
            return StopEvent(result=[type(state).__name__, state.model_dump()])

    class OnChild(OnParent):
        @step
        async def more(self, ctx: Context[Child], ev: StartEvent) -> None:
            return None

    class OnOther(OnParent):
        @step
        async def more(self, ctx: Context[Other], ev: StartEvent) -> None:
            return None

    return OnParent, OnChild, OnOther


async def test_parent_steps_run_on_the_parent_state(impl: SimpleNamespace, bounded: Any) -> None:
    on_parent, _, _ = family(impl)
    assert await bounded(on_parent(timeout=10).run()) == ["Parent", {"a": 5}]


async def test_a_subclass_state_extends_the_parents_in_its_steps(
    impl: SimpleNamespace, bounded: Any
) -> None:
    _, on_child, _ = family(impl)
    assert await bounded(on_child(timeout=10).run()) == ["Child", {"a": 5, "b": 0}]


def test_sibling_state_types_are_refused(impl: SimpleNamespace) -> None:
    _, _, on_other = family(impl)
    with pytest.raises(ValueError, match=r"^Multiple state types are not in a compatible"):
        on_other(timeout=10).run()


def merging(impl: SimpleNamespace) -> Any:
    """``Context[Child]``: set ``b``, then ``set_state`` a Parent, then try an Other."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Merging(impl.Workflow):
        @step
        async def begin(self, ctx: Context[Child], ev: StartEvent) -> StopEvent:
            await ctx.store.set("b", 3)
            await ctx.store.set_state(Parent(a=7))
            try:
                await ctx.store.set_state(Other())  # type: ignore[arg-type]
                refused = ""
            except ValueError as exc:
                refused = str(exc)
            state = await ctx.store.get_state()
            return StopEvent(result=[type(state).__name__, state.model_dump(), refused])

    return Merging(timeout=10)


async def test_set_state_with_a_parent_model_merges_its_fields(
    impl: SimpleNamespace, bounded: Any
) -> None:
    assert await bounded(merging(impl).run()) == [
        "Child",
        {"a": 7, "b": 3},
        "State must be of type Child or a parent type, got Other",
    ]


async def test_set_state_of_a_typed_model_on_untyped_state_is_refused(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Untyped(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.store.set_state(Other())
            except ValueError as exc:
                return StopEvent(result=str(exc))
            return StopEvent(result="accepted")

    assert await bounded(Untyped(timeout=10).run()) == (
        "State must be of type DictState or a parent type, got Other"
    )


def reading(impl: SimpleNamespace) -> Any:
    """Returns the state's ``k`` (None when unset)."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Reading(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await ctx.store.get("k", None))

    return Reading(timeout=10)


@pytest.mark.parametrize("version", [3, "2", 2.5])
def test_a_snapshot_of_a_newer_or_unknown_version_is_refused(
    impl: SimpleNamespace, version: Any
) -> None:
    with pytest.raises(impl.errors.ContextSerdeError) as info:
        impl.Context.from_dict(reading(impl), {"version": version, "state": {}})
    assert str(info.value) == (
        "Context dict specified in an invalid format: Cannot load serialized workflow "
        f"context with version={version!r}; this library supports up to version 2. The "
        "payload was likely written by a newer version of llama-index-workflows."
    )


@pytest.mark.parametrize(
    "snapshot",
    [
        {"state": {"state_type": "DictState", "state_data": {"_data": {"k": "5"}}}},
        {"version": 0, "state": {"state_data": {"_data": {"k": "5"}}}},
        {"version": 1, "state": {"state_data": {"_data": {"k": "5"}}}, "workers": {}},
    ],
    ids=["v0-unversioned", "v0", "v1"],
)
async def test_a_snapshot_of_an_older_version_is_migrated(
    impl: SimpleNamespace, bounded: Any, snapshot: dict[str, Any]
) -> None:
    workflow = reading(impl)
    ctx = impl.Context.from_dict(workflow, snapshot)
    assert ctx.is_running is False
    assert await bounded(workflow.run(ctx=ctx)) == 5


def test_a_malformed_snapshot_section_is_refused(impl: SimpleNamespace) -> None:
    with pytest.raises(impl.errors.ContextSerdeError, match=r"^Context dict specified in an"):
        impl.Context.from_dict(reading(impl), {"version": 2, "is_running": "maybe"})
