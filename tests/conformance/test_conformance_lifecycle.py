"""How runs end and how steps execute: results, failures, cancel, timeout, retries,
@catch_error, concurrency limits, resources, custom start/stop events.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Annotated, Any

import pytest


def sleeping_workflow(impl: SimpleNamespace, seconds: float, **options: Any) -> Any:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Sleepy(impl.Workflow):
        @step
        async def nap(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(seconds)
            return StopEvent(result="woke")

    return Sleepy(**options)


def fixed_retries(impl: SimpleNamespace, attempts: int) -> Any:
    rp = impl.retry_policy
    return rp.retry_policy(wait=rp.wait_fixed(0), stop=rp.stop_after_attempt(attempts))


async def test_run_kwargs_build_the_default_start_event(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Echo(impl.Workflow):
        @step
        async def echo(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=(ev.get("x"), ev.x, ev["x"], ev.get("missing", "dflt")))

    assert await bounded(Echo().run(x=7)) == (7, 7, 7, "dflt")


async def test_run_with_an_explicit_custom_start_event(impl: SimpleNamespace, bounded: Any) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Order(StartEvent):
        item: str
        quantity: int = 1

    class Shop(impl.Workflow):
        @step
        async def buy(self, ev: Order) -> StopEvent:
            return StopEvent(result=f"{ev.quantity} x {ev.item}")

    workflow = Shop()
    assert await bounded(workflow.run(item="tea")) == "1 x tea"
    assert await bounded(workflow.run(start_event=Order(item="jam", quantity=2))) == "2 x jam"


async def test_a_custom_stop_event_is_the_run_result(impl: SimpleNamespace, bounded: Any) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Receipt(StopEvent):
        total: int

    class Till(impl.Workflow):
        @step
        async def pay(self, ev: StartEvent) -> Receipt:
            return Receipt(total=ev.get("amount") * 2)

    result = await bounded(Till().run(amount=21))
    assert type(result) is Receipt
    assert result.total == 42


async def test_a_stop_event_result_is_returned_by_awaiting_the_handler_twice(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = sleeping_workflow(impl, 0).run()
    assert isinstance(handler, impl.WorkflowHandler)
    assert await bounded(handler) == "woke"
    assert await bounded(handler) == "woke"
    assert handler.is_done() is True


async def test_a_step_without_context_parameter_runs(impl: SimpleNamespace, bounded: Any) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Middle(Event):
        word: str

    class NoContext(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Middle:
            return Middle(word="plain")

        @step
        async def finish(self, ev: Middle) -> StopEvent:
            return StopEvent(result=ev.word)

    assert await bounded(NoContext().run()) == "plain"


async def test_a_failing_step_reraises_the_original_exception(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Broken(impl.Workflow):
        @step
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        await bounded(Broken().run())


async def test_a_failing_run_streams_a_workflow_failed_event_last(
    impl: SimpleNamespace, drain: Any, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Broken(impl.Workflow):
        @step
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise LookupError("no such thing")

    handler = Broken().run()
    events = await drain(handler)
    assert [type(ev) for ev in events] == [impl.events.WorkflowFailedEvent]
    assert events[0].step_name == "explode"
    with pytest.raises(LookupError):
        await bounded(handler)


async def test_cancel_run_makes_awaiting_raise_cancelled_by_user(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = sleeping_workflow(impl, 10, timeout=20).run()
    await asyncio.sleep(0.05)
    await bounded(handler.cancel_run())
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)
    assert type(handler.get_stop_event()) is impl.events.WorkflowCancelledEvent


async def test_cancel_run_ends_the_stream_with_a_cancelled_event(
    impl: SimpleNamespace, drain: Any, bounded: Any
) -> None:
    handler = sleeping_workflow(impl, 10, timeout=20).run()

    async def cancel_soon() -> None:
        await asyncio.sleep(0.05)
        await handler.cancel_run()

    canceller = asyncio.create_task(cancel_soon())
    events = await drain(handler)
    await bounded(canceller)
    assert [type(ev) for ev in events] == [impl.events.WorkflowCancelledEvent]
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)


async def test_workflow_timeout_raises_workflow_timeout_error(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = sleeping_workflow(impl, 10, timeout=0.2).run()
    with pytest.raises(impl.errors.WorkflowTimeoutError) as info:
        await bounded(handler)
    assert ("Operation timed out after 0.2 seconds. Currently active steps: nap") in str(info.value)


async def test_workflow_timeout_streams_a_timed_out_event(
    impl: SimpleNamespace, drain: Any, bounded: Any
) -> None:
    handler = sleeping_workflow(impl, 10, timeout=0.2).run()
    events = await drain(handler)
    assert [type(ev) for ev in events] == [impl.events.WorkflowTimedOutEvent]
    assert events[0].timeout == 0.2
    assert events[0].active_steps == ["nap"]
    with pytest.raises(impl.errors.WorkflowTimeoutError):
        await bounded(handler)


async def test_retry_policy_reruns_a_step_until_it_succeeds(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    seen: list[tuple[int, str | None]] = []

    class Flaky(impl.Workflow):
        @step(retry_policy=fixed_retries(impl, 3))
        async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
            info = ctx.retry_info()
            last = None if info.last_exception is None else str(info.last_exception)
            seen.append((info.retry_number, last))
            if len(seen) < 3:
                raise ConnectionError(f"attempt {len(seen)}")
            return StopEvent(result=len(seen))

    assert await bounded(Flaky().run()) == 3
    assert seen == [(0, None), (1, "attempt 1"), (2, "attempt 2")]


async def test_retry_info_on_the_first_attempt_is_empty(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class Once(impl.Workflow):
        @step
        async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
            info = ctx.retry_info()
            return StopEvent(
                result=(
                    info.retry_number,
                    info.elapsed_seconds,
                    info.last_exception,
                    info.last_failed_at,
                )
            )

    assert await bounded(Once().run()) == (0, 0.0, None, None)


async def test_retry_policy_exhausted_reraises_the_last_exception(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    attempts: list[int] = []

    class Hopeless(impl.Workflow):
        @step(retry_policy=fixed_retries(impl, 3))
        async def hopeless(self, ev: StartEvent) -> StopEvent:
            attempts.append(len(attempts) + 1)
            raise ConnectionError(f"attempt {len(attempts)}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        await bounded(Hopeless().run())
    assert attempts == [1, 2, 3]


async def test_constant_delay_retry_policy_is_deprecated_but_retries(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    with pytest.warns(DeprecationWarning, match="ConstantDelayRetryPolicy is deprecated"):
        policy = impl.retry_policy.ConstantDelayRetryPolicy(maximum_attempts=3, delay=0)
    attempts: list[int] = []

    class Flaky(impl.Workflow):
        @step(retry_policy=policy)
        async def flaky(self, ev: StartEvent) -> StopEvent:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("again")
            return StopEvent(result=len(attempts))

    assert await bounded(Flaky().run()) == 3


async def test_catch_error_turns_a_failure_into_a_stop_event(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class Rescued(impl.Workflow):
        @step(retry_policy=fixed_retries(impl, 2))
        async def fragile(self, ev: StartEvent) -> StopEvent:
            raise ValueError("bad input")

        @catch_error
        async def rescue(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(
                result={
                    "step": ev.step_name,
                    "error": f"{type(ev.exception).__name__}: {ev.exception}",
                    "attempts": ev.attempts,
                    "input": type(ev.input_event).__name__,
                }
            )

    assert await bounded(Rescued().run()) == {
        "step": "fragile",
        "error": "ValueError: bad input",
        "attempts": 2,
        "input": "StartEvent",
    }


async def test_catch_error_for_steps_only_handles_the_named_steps(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class Middle(Event):
        pass

    class Scoped(impl.Workflow):
        @step
        async def first(self, ev: StartEvent) -> Middle:
            return Middle()

        @step
        async def second(self, ev: Middle) -> StopEvent:
            raise ValueError("second failed")

        @catch_error(for_steps=["first"])
        async def rescue_first(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result="rescued")

    with pytest.raises(ValueError, match="second failed"):
        await bounded(Scoped().run())


async def test_a_failing_catch_error_handler_fails_the_run_with_its_exception(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    StepFailedEvent, catch_error = impl.StepFailedEvent, impl.catch_error

    class DoubleFault(impl.Workflow):
        @step
        async def fragile(self, ev: StartEvent) -> StopEvent:
            raise ValueError("first fault")

        @catch_error
        async def rescue(self, ev: StepFailedEvent) -> StopEvent:
            raise RuntimeError("handler fault")

    with pytest.raises(RuntimeError, match="handler fault"):
        await bounded(DoubleFault().run())


@pytest.mark.parametrize("num_workers", [1, 2])
async def test_num_workers_caps_concurrent_executions_of_a_step(
    impl: SimpleNamespace, bounded: Any, num_workers: int
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context
    active = 0
    peak = 0

    class Job(Event):
        pass

    class Done(Event):
        pass

    class Pool(impl.Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job | None:
            for _ in range(6):
                ctx.send_event(Job())
            return None

        @step(num_workers=num_workers)
        async def work(self, ev: Job) -> Done:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.03)
            active -= 1
            return Done()

        @step
        async def finish(self, ctx: Context, ev: Done) -> StopEvent | None:
            if ctx.collect_events(ev, [Done] * 6) is None:
                return None
            return StopEvent(result="all done")

    assert await bounded(Pool().run()) == "all done"
    assert peak == num_workers


async def test_num_concurrent_runs_queues_runs_beyond_the_limit(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    active = 0
    peak = 0

    class Exclusive(impl.Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            return StopEvent(result=ev.get("i"))

    workflow = Exclusive(num_concurrent_runs=1)
    handlers = [workflow.run(i=i) for i in range(3)]
    results = await bounded(asyncio.gather(*(bounded(h) for h in handlers)))
    assert sorted(results) == [0, 1, 2]
    assert peak == 1


async def test_resource_factory_is_called_once_when_cached(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Resource = impl.resource.Resource
    made: list[dict[str, int]] = []

    def make_client() -> dict[str, int]:
        client = {"id": len(made) + 1}
        made.append(client)
        return client

    class Middle(Event):
        client_id: int

    class Injected(impl.Workflow):
        @step
        async def first(
            self, ev: StartEvent, client: Annotated[dict, Resource(make_client)]
        ) -> Middle:
            return Middle(client_id=client["id"])

        @step
        async def second(
            self, ev: Middle, client: Annotated[dict, Resource(make_client)]
        ) -> StopEvent:
            return StopEvent(result=(ev.client_id, client["id"]))

    workflow = Injected()
    assert await bounded(workflow.run()) == (1, 1)
    assert await bounded(workflow.run()) == (1, 1)
    assert len(made) == 1


async def test_resource_factory_without_cache_is_called_per_injection(
    impl: SimpleNamespace, bounded: Any
) -> None:
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Resource = impl.resource.Resource
    made: list[int] = []

    def make_counter() -> int:
        made.append(len(made) + 1)
        return made[-1]

    class Middle(Event):
        first: int

    class Fresh(impl.Workflow):
        @step
        async def first(
            self, ev: StartEvent, n: Annotated[int, Resource(make_counter, cache=False)]
        ) -> Middle:
            return Middle(first=n)

        @step
        async def second(
            self, ev: Middle, n: Annotated[int, Resource(make_counter, cache=False)]
        ) -> StopEvent:
            return StopEvent(result=(ev.first, n))

    assert await bounded(Fresh().run()) == (1, 2)
    assert made == [1, 2]


async def test_an_async_resource_factory_is_awaited(impl: SimpleNamespace, bounded: Any) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step
    Resource = impl.resource.Resource

    async def make_token() -> str:
        await asyncio.sleep(0)
        return "token-1"

    class AsyncInjected(impl.Workflow):
        @step
        async def use(
            self, ev: StartEvent, token: Annotated[str, Resource(make_token)]
        ) -> StopEvent:
            return StopEvent(result=token)

    assert await bounded(AsyncInjected().run()) == "token-1"


async def test_two_instances_of_one_workflow_class_run_their_own_steps(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step = impl.StartEvent, impl.StopEvent, impl.step

    class Tagged(impl.Workflow):
        def __init__(self, tag: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tag = tag

        @step
        async def answer(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(0.05)
            return StopEvent(result=self.tag)

    first = Tagged("one", timeout=10).run()
    second = Tagged("two", timeout=10).run()
    assert [await bounded(first, 10), await bounded(second, 10)] == ["one", "two"]


async def test_retry_info_counts_elapsed_time_from_the_first_attempt(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context
    elapsed: list[float] = []

    class Slow(impl.Workflow):
        @step(retry_policy=fixed_retries(impl, 3))
        async def slow(self, ctx: Context, ev: StartEvent) -> StopEvent:
            elapsed.append(ctx.retry_info().elapsed_seconds)
            await asyncio.sleep(0.3)  # the attempt's own time counts too
            if len(elapsed) < 2:
                raise ConnectionError("again")
            return StopEvent(result=len(elapsed))

    assert await bounded(Slow(timeout=10).run(), 10) == 2
    assert elapsed[0] == 0.0
    assert elapsed[1] >= 0.3  # since the first attempt started, not since it failed
