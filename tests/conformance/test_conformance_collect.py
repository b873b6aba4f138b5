"""Fan-in as upstream 2.26 does it: ``list[E]`` parameters collect the members of a
fan-out stream; ``Collect(Take(n))`` fires early; dropped branches and empty streams."""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from basics import basics


def collect_of(impl: SimpleNamespace) -> Any:
    return importlib.import_module(f"{impl.name}.collect")


def fan_in_workflow(impl: SimpleNamespace, *, drop: set[int], collector: str = "all") -> Any:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Collect, Take = collect_of(impl).Collect, collect_of(impl).Take

    class Item(Event):
        i: int

    class Done(Event):
        i: int

    class FanIn(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(ev.get("n"))]

        @step(num_workers=8)
        async def work(self, ev: Item) -> Done | None:
            await asyncio.sleep(0.02 * ev.i)
            return None if ev.i in drop else Done(i=ev.i)

        if collector == "all":

            @step
            async def gather(self, evs: list[Done]) -> StopEvent:
                return StopEvent(result=sorted(e.i for e in evs))

        else:

            @step
            async def gather(self, evs: Annotated[list[Done], Collect(Take(2))]) -> StopEvent:
                return StopEvent(result=len(evs))

    return FanIn


async def test_a_join_fires_with_the_members_of_branches_not_dropped(
    impl: SimpleNamespace, bounded: Any
) -> None:
    FanIn = fan_in_workflow(impl, drop={1, 3})
    assert await bounded(FanIn(timeout=10).run(n=5), 10) == [0, 2, 4]


async def test_a_join_fires_once_with_nothing_when_every_branch_is_dropped(
    impl: SimpleNamespace, bounded: Any
) -> None:
    FanIn = fan_in_workflow(impl, drop={0, 1, 2})
    assert await bounded(FanIn(timeout=10).run(n=3), 10) == []


async def test_an_empty_fan_out_fires_its_join_once_with_an_empty_list(
    impl: SimpleNamespace, bounded: Any
) -> None:
    FanIn = fan_in_workflow(impl, drop=set())
    assert await bounded(FanIn(timeout=10).run(n=0), 10) == []


async def test_take_fires_with_the_first_members(impl: SimpleNamespace, bounded: Any) -> None:
    FanIn = fan_in_workflow(impl, drop=set(), collector="take")
    assert await bounded(FanIn(timeout=10).run(n=4), 10) == 2


async def test_take_fires_at_settling_with_fewer_members(
    impl: SimpleNamespace, bounded: Any
) -> None:
    FanIn = fan_in_workflow(impl, drop={1, 2, 3}, collector="take")
    assert await bounded(FanIn(timeout=10).run(n=4), 10) == 1


async def test_a_bare_element_under_a_pure_list_return_is_a_runtime_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Bare(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return Item(i=0)  # type: ignore[return-value]

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            return StopEvent(result=len(evs))

    with pytest.raises(impl.errors.WorkflowRuntimeError, match="returned a bare Item"):
        await bounded(Bare(timeout=10).run(), 10)


async def test_a_union_producer_returning_its_bare_member_is_ordinary_dispatch(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Single(Event):
        pass

    class Union(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item] | Single:
            return Single()

        @step
        async def single(self, ev: Single) -> StopEvent:
            return StopEvent(result="single")

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            return StopEvent(result="gathered")

    assert await bounded(Union(timeout=10).run(), 10) == "single"


async def test_a_send_targeted_at_a_collecting_step_is_refused(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Item(Event):
        i: int

    class Targeted(impl.Workflow):
        @step
        async def split(self, ctx: Context, ev: StartEvent) -> list[Item] | None:
            ctx.send_event(Item(i=0), step="gather")
            return None

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            return StopEvent(result=len(evs))

    with pytest.raises(impl.errors.WorkflowRuntimeError, match="cannot receive targeted events"):
        await bounded(Targeted(timeout=10).run(), 10)


async def test_an_untargeted_send_from_a_branch_is_no_member_of_its_stream(
    impl: SimpleNamespace, bounded: Any, caplog: pytest.LogCaptureFixture
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Item(Event):
        i: int

    class Done(Event):
        i: int

    class Sending(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(3)]

        @step(num_workers=4)
        async def work(self, ctx: Context, ev: Item) -> Done:
            # Sent, not returned: it leaves the stream, so it never joins the batch.
            ctx.send_event(Done(i=100 + ev.i))
            return Done(i=ev.i)

        @step
        async def gather(self, evs: list[Done]) -> StopEvent:
            await asyncio.sleep(0.3)  # the sends arrive meanwhile: none fires gather again
            return StopEvent(result=sorted(e.i for e in evs))

    with caplog.at_level(logging.WARNING):
        assert await bounded(Sending(timeout=10).run(), 10) == [0, 1, 2]
    ignored = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = (
        "Ignoring Done for collect step 'gather': it was sent outside any collection "
        "stream (e.g. via ctx.send_event) so it cannot join a batch."
    )
    assert ignored.count(expected) == 3, ignored


async def test_a_step_woken_by_a_send_from_a_branch_is_outside_the_stream(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Item(Event):
        i: int

    class Side(Event):
        i: int

    class Done(Event):
        i: int

    class Aside(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(2)]

        @step(num_workers=4)
        async def work(self, ctx: Context, ev: Item) -> Done | Side:
            ctx.send_event(Side(i=10 + ev.i))
            return Done(i=ev.i)

        @step(num_workers=4)
        async def side(self, ev: Side) -> Done:
            # Woken by a send: what it returns is no member of the branch's stream.
            return Done(i=ev.i)

        @step
        async def gather(self, evs: list[Done]) -> StopEvent:
            await asyncio.sleep(0.3)
            return StopEvent(result=sorted(e.i for e in evs))

    assert await bounded(Aside(timeout=10).run(), 10) == [0, 1]


def test_collect_markers_are_validated(impl: SimpleNamespace) -> None:
    collect = collect_of(impl)
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    with pytest.raises(ValueError, match=r"Take\(n\) requires an integer n >= 1"):
        collect.Take(0)

    class Item(Event):
        i: int

    def make(annotation: Any) -> Any:
        class Marked(impl.Workflow):
            @step
            async def split(self, ev: StartEvent) -> list[Item]:
                return []

            @step
            async def gather(self, evs: annotation) -> StopEvent:  # type: ignore[valid-type]
                return StopEvent()

        return Marked

    with pytest.raises(impl.errors.WorkflowValidationError, match="carries a Collect marker"):
        make(Annotated[Item, collect.Collect()])().run()
    with pytest.raises(impl.errors.WorkflowValidationError, match="must be All"):
        make(Annotated[list[Item], collect.Collect(collect.Cardinality())])().run()


#: Step signatures upstream refuses at decoration (the annotations of parameters ``a``
#: and ``b`` given event classes A and B), and its message for each.
REFUSED_SHAPES: dict[str, tuple[Any, Any, str]] = {
    "two collection parameters": (
        lambda A, B: list[A],
        lambda A, B: list[B],
        "A step may declare at most one list[E] collection parameter, but found both 'a' "
        "and 'b'. Multi-slot collects are not supported.",
    ),
    "a collection beside an event": (
        lambda A, B: list[A],
        lambda A, B: B,
        "A list[E] collection parameter cannot be combined with other event parameters. "
        "Use a single list[E] parameter, or multiple single-event parameters for a "
        "multi-slot join.",
    ),
    "a union slot in a join": (
        lambda A, B: A | B,
        lambda A, B: B,
        "Collect-mode steps (more than one event parameter) require each event parameter "
        "to declare a single event type, but parameter 'a' declares 2. Union-typed "
        "collect parameters are not supported.",
    ),
}


@pytest.mark.parametrize("shape", list(REFUSED_SHAPES))
def test_join_shapes_upstream_refuses_are_refused_with_its_message(
    impl: SimpleNamespace, shape: str
) -> None:
    first, second, message = REFUSED_SHAPES[shape]

    class A(impl.Event):
        pass

    class B(impl.Event):
        pass

    async def s(self: Any, a: Any, b: Any) -> Any:
        return impl.StopEvent()

    s.__annotations__ = {"a": first(A, B), "b": second(A, B), "return": impl.StopEvent}

    class Joins(impl.Workflow):
        pass

    with pytest.raises(impl.errors.WorkflowValidationError) as raised:
        impl.step(workflow=Joins)(s)
    assert str(raised.value) == message


async def test_an_optional_list_parameter_collects(impl: SimpleNamespace, bounded: Any) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Optional(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(3)]

        @step
        async def gather(self, evs: list[Item] | None) -> StopEvent:
            return StopEvent(result=sorted(e.i for e in evs or []))

    assert await bounded(Optional(timeout=10).run(), 10) == [0, 1, 2]


def test_the_step_config_tells_the_collection_facts(impl: SimpleNamespace) -> None:
    collect = collect_of(impl)
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Single(Event):
        pass

    class Other(Event):
        pass

    class Facts(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item] | Single:
            return []

        @step
        async def gather(
            self, evs: Annotated[list[Item], collect.Collect(collect.Take(2))]
        ) -> Other:
            return Other()

        @step
        async def join(self, single: Single, other: Other) -> StopEvent:
            return StopEvent()

    split, gather, join = (
        Facts.split._step_config,
        Facts.gather._step_config,
        Facts.join._step_config,
    )
    assert split.is_fan_out and tuple(split.bare_return_types) == (Single,)
    assert gather.collection_param == ("evs", (Item,))
    assert gather.collection_policy == collect.Collect(collect.Take(2))
    assert split.collection_param is None and split.collection_policy is None
    assert list(join.collect_params) == [("single", Single), ("other", Other)]


async def test_a_collecting_step_that_waits_keeps_its_members_when_resumed(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Item(Event):
        i: int

    class Asks(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(3)]

        @step
        async def gather(self, ctx: Context, evs: list[Item]) -> StopEvent:
            asked = impl.InputRequiredEvent(prefix="ok?")
            answer = await ctx.wait_for_event(impl.HumanResponseEvent, waiter_event=asked)
            return StopEvent(result=[sorted(e.i for e in evs), answer.response])

    handler = Asks(timeout=10).run()

    async def converse() -> None:
        async for ev in handler.stream_events():
            if isinstance(ev, impl.InputRequiredEvent):
                handler.ctx.send_event(impl.HumanResponseEvent(response="yes"))

    await bounded(converse(), 10)
    assert await bounded(handler, 10) == [[0, 1, 2], "yes"]
