"""The state store behind ``ctx.store``: paths, whole-state access, edit_state, typed state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, Field


class Counter(BaseModel):
    """Typed state with defaults for every field, as the docs require."""

    count: int = 0
    tags: list[str] = Field(default_factory=list)


class NoDefaults(BaseModel):
    count: int


def probe_workflow(impl: SimpleNamespace, body: Callable[[Any], Any]) -> Any:
    """A one-step workflow whose step returns ``await body(ctx)`` as the result."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Probe(impl.Workflow):
        @step
        async def probe(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await body(ctx))

    return Probe()


async def test_store_get_returns_the_default_for_a_missing_path(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        return await ctx.store.get("a.b", default="fallback")

    assert await bounded(probe_workflow(impl, body).run()) == "fallback"


async def test_store_get_of_a_missing_path_without_default_raises_value_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        try:
            await ctx.store.get("missing.path")
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert "Path 'missing.path' not found in state" in await bounded(
        probe_workflow(impl, body).run()
    )


async def test_store_get_returns_a_stored_none_rather_than_the_default(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("nothing", None)
        return await ctx.store.get("nothing", default="fallback")

    assert await bounded(probe_workflow(impl, body).run()) is None


async def test_store_set_of_a_dotted_path_creates_intermediate_dicts(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("a.b", 1)
        await ctx.store.set("a.c.d", "x")
        return (
            await ctx.store.get("a"),
            await ctx.store.get("a.b"),
            await ctx.store.get("a.c.d"),
        )

    assert await bounded(probe_workflow(impl, body).run()) == (
        {"b": 1, "c": {"d": "x"}},
        1,
        "x",
    )


async def test_store_set_of_an_empty_path_raises_value_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        try:
            await ctx.store.set("", 1)
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert "Path cannot be empty" in await bounded(probe_workflow(impl, body).run())


async def test_store_default_state_is_a_dict_state(impl: SimpleNamespace, bounded: Any) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("name", "ada")
        state = await ctx.store.get_state()
        return (type(state) is impl.DictState, state["name"], state.get("name"), "name" in state)

    assert await bounded(probe_workflow(impl, body).run()) == (True, "ada", "ada", True)


async def test_store_set_state_replaces_the_whole_state(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("old", 1)
        await ctx.store.set_state(impl.DictState(new=2))
        return (await ctx.store.get("old", default="gone"), await ctx.store.get("new"))

    assert await bounded(probe_workflow(impl, body).run()) == ("gone", 2)


async def test_store_clear_resets_to_an_empty_state(impl: SimpleNamespace, bounded: Any) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("a.b", 1)
        await ctx.store.clear()
        state = await ctx.store.get_state()
        return (await ctx.store.get("a", default="gone"), len(state))

    assert await bounded(probe_workflow(impl, body).run()) == ("gone", 0)


async def test_store_edit_state_commits_on_exit(impl: SimpleNamespace, bounded: Any) -> None:
    async def body(ctx: Any) -> Any:
        async with ctx.store.edit_state() as state:
            state["count"] = state.get("count", 0) + 1
            state["nested"] = {"k": "v"}
        return (await ctx.store.get("count"), await ctx.store.get("nested.k"))

    assert await bounded(probe_workflow(impl, body).run()) == (1, "v")


async def test_store_reads_inside_edit_state_see_the_committed_state(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("count", 1)
        async with ctx.store.edit_state() as state:
            state["count"] = 2
            inside = (await ctx.store.get("count"), (await ctx.store.get_state())["count"])
        return (inside, await ctx.store.get("count"))

    assert await bounded(probe_workflow(impl, body).run()) == ((1, 1), 2)


async def test_store_a_concurrent_step_reads_committed_state_during_an_edit(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    editing = asyncio.Event()
    read_done = asyncio.Event()

    class Go(Event):
        pass

    class Seen(Event):
        who: str
        value: Any

    class Isolated(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Go:
            await ctx.store.set("count", 1)
            return Go()

        @step
        async def writer(self, ctx: Context, ev: Go) -> Seen:
            async with ctx.store.edit_state() as state:
                state["count"] = 99
                editing.set()
                await asyncio.wait_for(read_done.wait(), 2)
            return Seen(who="writer", value=None)

        @step
        async def reader(self, ctx: Context, ev: Go) -> Seen:
            await asyncio.wait_for(editing.wait(), 2)
            value = await ctx.store.get("count")
            read_done.set()
            return Seen(who="reader", value=value)

        @step
        async def finish(self, ctx: Context, ev: Seen) -> StopEvent | None:
            both = ctx.collect_events(ev, [Seen, Seen])
            if both is None:
                return None
            seen = {e.who: e.value for e in both}
            return StopEvent(result=(seen["reader"], await ctx.store.get("count")))

    assert await bounded(Isolated().run()) == (1, 99)


@pytest.mark.parametrize("writer", ["set", "set_state", "clear", "edit_state"])
async def test_store_a_writer_inside_edit_state_raises_runtime_error(
    impl: SimpleNamespace, bounded: Any, writer: str
) -> None:
    async def nested_write(ctx: Any) -> None:
        if writer == "set":
            await ctx.store.set("x", 1)
        elif writer == "set_state":
            await ctx.store.set_state(impl.DictState())
        elif writer == "clear":
            await ctx.store.clear()
        else:
            async with ctx.store.edit_state():
                pass

    async def body(ctx: Any) -> Any:
        async with ctx.store.edit_state() as state:
            state["x"] = 0
            try:
                # Awaited in this task: the writer lock knows its holder by task.
                await nested_write(ctx)
            except RuntimeError as exc:
                return str(exc)
        return "no error"

    assert "writer called inside edit_state: mutate the yielded state instead" in (
        await bounded(probe_workflow(impl, body).run())
    )


async def test_store_an_exception_inside_edit_state_discards_the_changes(
    impl: SimpleNamespace, bounded: Any
) -> None:
    async def body(ctx: Any) -> Any:
        await ctx.store.set("count", 1)
        try:
            async with ctx.store.edit_state() as state:
                state["count"] = 2
                state["extra"] = True
                raise KeyError("abort")
        except KeyError:
            pass
        return (await ctx.store.get("count"), await ctx.store.get("extra", default="gone"))

    assert await bounded(probe_workflow(impl, body).run()) == (1, "gone")


async def test_store_concurrent_edits_do_not_lose_updates(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Bump(Event):
        pass

    class Bumped(Event):
        pass

    class Counting(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Bump | None:
            for _ in range(8):
                ctx.send_event(Bump())
            return None

        @step(num_workers=4)
        async def bump(self, ctx: Context, ev: Bump) -> Bumped:
            async with ctx.store.edit_state() as state:
                current = state.get("count", 0)
                await asyncio.sleep(0.01)  # yield while holding the edit
                state["count"] = current + 1
            return Bumped()

        @step
        async def finish(self, ctx: Context, ev: Bumped) -> StopEvent | None:
            if ctx.collect_events(ev, [Bumped] * 8) is None:
                return None
            return StopEvent(result=await ctx.store.get("count"))

    assert await bounded(Counting().run()) == 8


async def test_store_state_is_shared_between_steps_of_a_run(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Next(Event):
        pass

    class Relay(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Next:
            await ctx.store.set("baton", ["begin"])
            return Next()

        @step
        async def finish(self, ctx: Context, ev: Next) -> StopEvent:
            baton = await ctx.store.get("baton")
            return StopEvent(result=[*baton, "finish"])

    handler = Relay().run()
    assert await bounded(handler) == ["begin", "finish"]
    assert await bounded(handler.ctx.store.get("baton")) == ["begin"]


async def test_typed_state_starts_from_the_model_defaults(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            state = await ctx.store.get_state()
            return StopEvent(result=(type(state) is Counter, state.count, state.tags))

    assert await bounded(Typed().run()) == (True, 0, [])


async def test_typed_state_edit_state_yields_the_model(impl: SimpleNamespace, bounded: Any) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.count += 5
                state.tags.append("edited")
            await ctx.store.set("count", await ctx.store.get("count") + 1)
            final = await ctx.store.get_state()
            return StopEvent(result=(final.count, final.tags, await ctx.store.get("tags")))

    handler = Typed().run()
    assert await bounded(handler) == (6, ["edited"], ["edited"])
    state = await bounded(handler.ctx.store.get_state())
    assert isinstance(state, Counter)
    assert state.count == 6


async def test_typed_state_set_of_an_unknown_field_raises_value_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            try:
                await ctx.store.set("nope", 1)
            except ValueError as exc:
                return StopEvent(result=str(exc))
            return StopEvent(result="no error")

    assert '"Counter" object has no field "nope"' in await bounded(Typed().run())


async def test_typed_state_assignment_of_an_unknown_attribute_in_edit_state_raises(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            try:
                async with ctx.store.edit_state() as state:
                    state.count = 3
                    state.nope = 1
            except ValueError as exc:
                return StopEvent(result=(str(exc), await ctx.store.get("count")))
            return StopEvent(result="no error")

    message, count = await bounded(Typed().run())
    assert '"Counter" object has no field "nope"' in message
    assert count == 0  # the failed block was not committed


async def test_typed_state_set_does_not_validate_the_value(
    impl: SimpleNamespace, bounded: Any
) -> None:
    # Upstream stores the raw value: pydantic models do not validate on assignment.
    # The wrong-typed value is overwritten before the step ends, so nothing has to
    # serialize it.
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            await ctx.store.set("count", "7")
            raw = await ctx.store.get("count")
            await ctx.store.set("count", 7)
            return StopEvent(result=raw)

    assert await bounded(Typed().run()) == "7"


def test_typed_state_without_defaults_fails_when_the_run_starts(impl: SimpleNamespace) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Typed(impl.Workflow):
        @step
        async def probe(self, ctx: Context[NoDefaults], ev: StartEvent) -> StopEvent:
            return StopEvent()

    workflow = Typed()  # constructing is fine
    with pytest.raises(Exception) as info:
        workflow.run()
    # Upstream raises pydantic's ValidationError (a ValueError) for the missing field.
    assert isinstance(info.value, ValueError)
    assert "count" in str(info.value)
