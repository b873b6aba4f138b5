"""Event routing: exact types, subclasses, broadcast, unions, joins, fan-out/fan-in, send_event."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from basics import basics


async def test_routing_delivers_only_to_steps_accepting_the_exact_type(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    calls: list[str] = []

    class Parent(Event):
        pass

    class Child(Parent):
        pass

    class Exact(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Parent | Child:
            return Child()

        @step
        async def on_parent(self, ev: Parent) -> StopEvent:
            calls.append("parent")
            return StopEvent(result="parent")

        @step
        async def on_child(self, ev: Child) -> StopEvent:
            calls.append("child")
            return StopEvent(result="child")

    assert await bounded(Exact().run()) == "child"
    assert calls == ["child"]


async def test_accept_event_subclasses_routes_a_subclass_to_the_base_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Animal(Event):
        name: str

    class Dog(Animal):
        pass

    class Zoo(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Dog:
            return Dog(name="rex")

        @step(accept_event_subclasses=True)
        async def greet(self, ev: Animal) -> StopEvent:
            return StopEvent(result=(type(ev).__name__, ev.name))

    assert await bounded(Zoo().run()) == ("Dog", "rex")


async def test_an_event_is_broadcast_to_every_accepting_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Ping(Event):
        pass

    class Pong(Event):
        by: str

    class Fanfare(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Ping:
            return Ping()

        @step
        async def left(self, ev: Ping) -> Pong:
            return Pong(by="left")

        @step
        async def right(self, ev: Ping) -> Pong:
            return Pong(by="right")

        @step
        async def finish(self, ctx: Context, ev: Pong) -> StopEvent | None:
            pongs = ctx.collect_events(ev, [Pong, Pong])
            if pongs is None:
                return None
            return StopEvent(result=sorted(p.by for p in pongs))

    assert await bounded(Fanfare().run()) == ["left", "right"]


async def test_the_first_stop_event_ends_the_run(impl: SimpleNamespace, bounded: Any) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Go(Event):
        pass

    class Race(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Go:
            return Go()

        @step
        async def fast(self, ev: Go) -> StopEvent:
            return StopEvent(result="fast")

        @step
        async def slow(self, ev: Go) -> StopEvent:
            await asyncio.sleep(0.5)
            return StopEvent(result="slow")

    assert await bounded(Race().run()) == "fast"


async def test_a_union_parameter_accepts_each_member_type(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Apple(Event):
        pass

    class Pear(Event):
        pass

    class Fruit(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Apple | Pear:
            return Apple() if ev.get("kind") == "apple" else Pear()

        @step
        async def eat(self, ev: Apple | Pear) -> StopEvent:
            return StopEvent(result=type(ev).__name__)

    workflow = Fruit()
    assert await bounded(workflow.run(kind="apple")) == "Apple"
    assert await bounded(workflow.run(kind="pear")) == "Pear"


async def test_a_multi_parameter_step_fires_once_both_events_arrived(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    joins: list[tuple[str, str]] = []

    class Query(Event):
        text: str

    class Docs(Event):
        text: str

    class Join(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Query | Docs | None:
            ctx.send_event(Docs(text="d"))
            await asyncio.sleep(0.05)
            ctx.send_event(Query(text="q"))
            return None

        @step
        async def answer(self, query: Query, docs: Docs) -> StopEvent:
            joins.append((query.text, docs.text))
            return StopEvent(result=f"{query.text}+{docs.text}")

    assert await bounded(Join().run()) == "q+d"
    assert joins == [("q", "d")]


async def test_a_list_return_fans_out_and_a_list_parameter_fans_in(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Doubled(Event):
        value: int

    class MapReduce(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(ev.get("n"))]

        @step
        async def double(self, ev: Item) -> Doubled:
            await asyncio.sleep(0.01 * (3 - ev.i))  # finish out of order
            return Doubled(value=ev.i * 2)

        @step
        async def gather(self, evs: list[Doubled]) -> StopEvent:
            return StopEvent(result=sorted(e.value for e in evs))

    assert await bounded(MapReduce().run(n=3)) == [0, 2, 4]


async def test_a_list_parameter_receives_every_member_of_a_returned_list(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    calls: list[int] = []

    class Item(Event):
        i: int

    class Batch(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return [Item(i=i) for i in range(ev.get("n"))]

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            calls.append(len(evs))
            return StopEvent(result=[e.i for e in evs])

    assert await bounded(Batch().run(n=3)) == [0, 1, 2]
    assert calls == [3]


async def test_an_empty_returned_list_releases_an_empty_fan_in(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Item(Event):
        i: int

    class Batch(impl.Workflow):
        @step
        async def split(self, ev: StartEvent) -> list[Item]:
            return []

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            return StopEvent(result=list(evs))

    assert await bounded(Batch().run()) == []


def test_a_list_parameter_without_a_list_producer_fails_validation(
    impl: SimpleNamespace,
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Item(Event):
        i: int

    class Unstreamed(impl.Workflow):
        @step
        async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
            ctx.send_event(Item(i=0))
            return None

        @step
        async def gather(self, evs: list[Item]) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Unstreamed().run()
    message = str(info.value)
    assert message.startswith("Step 'gather' parameter 'evs' collects list[Item]")
    assert "use ctx.collect_events for unstreamed ctx.send_event flows" in message


async def test_collect_events_returns_none_until_all_expected_events_arrived(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    partials: list[None] = []

    class Part(Event):
        n: int

    class Summer(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Part | None:
            for n in (1, 2, 3):
                ctx.send_event(Part(n=n))
            return None

        @step
        async def total(self, ctx: Context, ev: Part) -> StopEvent | None:
            parts = ctx.collect_events(ev, [Part, Part, Part])
            if parts is None:
                partials.append(None)
                return None
            return StopEvent(result=sum(p.n for p in parts))

    assert await bounded(Summer().run()) == 6
    assert len(partials) == 2


async def test_collect_events_orders_the_result_like_the_expected_list(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class First(Event):
        pass

    class Second(Event):
        pass

    class Ordered(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> First | Second | None:
            ctx.send_event(Second())
            await asyncio.sleep(0.05)
            ctx.send_event(First())
            return None

        @step
        async def both(self, ctx: Context, ev: First | Second) -> StopEvent | None:
            got = ctx.collect_events(ev, [First, Second])
            if got is None:
                return None
            return StopEvent(result=[type(e).__name__ for e in got])

    assert await bounded(Ordered().run()) == ["First", "Second"]


async def test_send_event_to_a_named_step_reaches_only_that_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    calls: list[str] = []

    class Job(Event):
        pass

    class Targeted(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job | None:
            ctx.send_event(Job(), step="second")
            return None

        @step
        async def first(self, ev: Job) -> StopEvent:
            calls.append("first")
            return StopEvent(result="first")

        @step
        async def second(self, ev: Job) -> StopEvent:
            calls.append("second")
            return StopEvent(result="second")

    assert await bounded(Targeted().run()) == "second"
    assert calls == ["second"]


async def test_send_event_to_an_unknown_step_raises_in_the_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    errors = impl.errors

    class Job(Event):
        pass

    class Misaddressed(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job | StopEvent:
            try:
                ctx.send_event(Job(), step="nowhere")
            except errors.WorkflowRuntimeError as exc:
                return StopEvent(result=str(exc))
            return StopEvent(result="sent")

        @step
        async def work(self, ev: Job) -> StopEvent:
            return StopEvent(result="work")

    assert "Step nowhere does not exist" in await bounded(Misaddressed().run())


async def test_send_event_to_a_step_that_does_not_accept_it_raises_in_the_step(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    errors = impl.errors

    class Job(Event):
        pass

    class Other(Event):
        pass

    class Misrouted(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job | StopEvent:
            try:
                ctx.send_event(Other(), step="work")
            except errors.WorkflowRuntimeError as exc:
                return StopEvent(result=str(exc))
            return StopEvent(result="sent")

        @step
        async def work(self, ev: Job) -> StopEvent:
            return StopEvent(result="work")

    message = await bounded(Misrouted().run())
    assert "Step work does not accept event of type <class '" in message
    assert "Other'>" in message


async def test_a_sync_step_runs_like_an_async_one(impl: SimpleNamespace, bounded: Any) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Middle(Event):
        value: int

    class Mixed(impl.Workflow):
        @step
        def begin(self, ev: StartEvent) -> Middle:
            return Middle(value=ev.get("x") + 1)

        @step
        async def finish(self, ctx: Context, ev: Middle) -> StopEvent:
            return StopEvent(result=ev.value * 10)

    assert await bounded(Mixed().run(x=1)) == 20


async def test_a_step_returning_none_emits_nothing(impl: SimpleNamespace, bounded: Any) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    seen: list[int] = []

    class Tick(Event):
        n: int

    class Quiet(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Tick | None:
            ctx.send_event(Tick(n=1))
            ctx.send_event(Tick(n=2))
            return None

        @step(num_workers=1)
        async def tick(self, ev: Tick) -> StopEvent | None:
            seen.append(ev.n)
            return StopEvent(result=seen[:]) if ev.n == 2 else None

    assert await bounded(Quiet().run()) == [1, 2]


async def test_a_join_of_one_type_binds_by_arrival_and_fires_again(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Num(Event):
        n: int

    class Pair(Event):
        a: int
        b: int

    class Pairs(impl.Workflow):
        @step
        async def emit(self, ctx: Context, ev: StartEvent) -> Num | None:
            for i in range(4):
                ctx.send_event(Num(n=i))
                await asyncio.sleep(0.01)
            return None

        @step
        async def pair(self, a: Num, b: Num) -> Pair:
            return Pair(a=a.n, b=b.n)

        @step
        async def count(self, ctx: Context, ev: Pair) -> StopEvent | None:
            async with ctx.store.edit_state() as state:
                pairs = [*state.get("pairs", []), [ev.a, ev.b]]
                state["pairs"] = pairs
            return StopEvent(result=sorted(pairs)) if len(pairs) == 2 else None

    assert await bounded(Pairs(timeout=10).run(), 10) == [[0, 1], [2, 3]]


@pytest.mark.parametrize("order", ["bc", "cb", "cc"])
async def test_overlapping_join_slots_with_subclasses_fill_as_upstream(
    impl: SimpleNamespace, bounded: Any, order: str
) -> None:
    Event, StartEvent, StopEvent, step, Context = basics(impl)

    class Base(Event):
        n: int

    class Child(Base):
        pass

    class Overlap(impl.Workflow):
        @step
        async def emit(self, ctx: Context, ev: StartEvent) -> Base | Child | None:
            for kind in order:
                ctx.send_event(Child(n=1) if kind == "c" else Base(n=0))
                await asyncio.sleep(0.01)
            return None

        @step(accept_event_subclasses=True)
        async def pair(self, a: Base, b: Child) -> StopEvent:
            return StopEvent(result=[type(a).__name__, type(b).__name__])

    expected = ["Child", "Child"] if order == "cc" else ["Base", "Child"]
    assert await bounded(Overlap(timeout=10).run(), 10) == expected
