"""A snapshot taken while a fan-in collects keeps what it collected, as upstream.

``ctx.to_dict()`` mid-fan-in carries the open stream (``streams``) and the members buffered
so far (``collection_release_states``); a run resumed from it releases the join with every
member: those buffered before the snapshot and those arriving after the resume. The last
branch is held either in a ``wait_for_event`` or in its step body while the snapshot is
taken, and the snapshot crosses implementations both ways.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from snapshot_helpers import as_json, publish


class Held:
    """How the last branch is held while the snapshot is taken: ``wait`` (a
    ``wait_for_event`` in the stream) or ``body`` (its step body blocks on a gate)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.gate = threading.Event()
        self.runs: list[int] = []


def fan_in_workflow(impl: SimpleNamespace, held: Held, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Three branches; two finish at once, the third is held; the join sums them up."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step
    Context = impl.Context

    class Item(Event):
        n: int

    class Done(Event):
        n: int

    class Go(impl.HumanResponseEvent):
        pass

    class Fan(impl.Workflow):
        @step
        async def fan(self, ev: StartEvent) -> list[Item]:
            return [Item(n=i) for i in range(3)]

        @step(num_workers=3)
        async def work(self, ctx: Context, ev: Item) -> Done:
            held.runs.append(ev.n)
            if ev.n == 2 and held.how == "wait":
                await ctx.wait_for_event(Go, waiter_event=impl.InputRequiredEvent(prefix="go?"))
            elif ev.n == 2:
                assert await asyncio.to_thread(held.gate.wait, 20), "the gate never opened"
            return Done(n=10 * ev.n)

        @step
        async def join(self, evs: list[Done]) -> StopEvent:
            return StopEvent(result=[e.n for e in evs])

    publish(monkeypatch, Item, Done, Go)
    Fan.Go = Go  # type: ignore[attr-defined]
    return Fan


def collecting(snapshot: dict[str, Any], held: Held) -> bool:
    """Two members buffered and the third branch held where the test holds it."""
    buffers = [r["buffer"] for r in snapshot["collection_release_states"].values()]
    work = snapshot["workers"]["work"]
    branch = work["collected_waiters"] if held.how == "wait" else work["in_progress"]
    return [len(b) for b in buffers] == [2] and len(branch) == 1


async def snapshot_mid_fan_in(
    impl: SimpleNamespace, held: Held, monkeypatch: pytest.MonkeyPatch, bounded: Any
) -> dict[str, Any]:
    """Run until two members are buffered, snapshot, cancel."""
    handler = fan_in_workflow(impl, held, monkeypatch)(timeout=30).run()

    async def until_collecting() -> dict[str, Any]:
        while not collecting(snapshot := as_json(impl, handler.ctx), held):
            await asyncio.sleep(0.02)
        return snapshot

    snapshot = await bounded(until_collecting(), 20)
    await bounded(handler.cancel_run())
    with pytest.raises(impl.errors.WorkflowCancelledByUser):
        await bounded(handler)
    return snapshot


async def resume(
    impl: SimpleNamespace,
    snapshot: dict[str, Any],
    held: Held,
    monkeypatch: pytest.MonkeyPatch,
    bounded: Any,
) -> list[int]:
    """Resume from ``snapshot``, let the held branch finish, return the join's members."""
    workflow = fan_in_workflow(impl, held, monkeypatch)(timeout=30)
    restored = impl.Context.from_dict(workflow, snapshot, serializer=impl.JsonSerializer())
    handler = workflow.run(ctx=restored)
    if held.how == "wait":
        # The waiter is restored as it was (its step does not run again to ask again).
        handler.ctx.send_event(type(workflow).Go())
    else:
        held.gate.set()
    result: list[int] = await bounded(handler, 20)
    return result


@pytest.mark.parametrize("how", ["wait", "body"])
async def test_a_snapshot_mid_fan_in_keeps_the_stream_and_its_members(
    impl: SimpleNamespace, bounded: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    held = Held(how)
    snapshot = await snapshot_mid_fan_in(impl, held, monkeypatch, bounded)
    [stream] = snapshot["streams"].values()
    assert stream["source_step"] == "fan"
    assert stream["open_work_items"] == 1
    [release] = snapshot["collection_release_states"].values()
    assert release["stream_id"] == stream["stream_id"]
    assert release["binding_id"] in stream["accepting_binding_ids"]
    assert release["binding_id"].startswith("fan->join:")
    assert release["released"] is False
    held_item = snapshot["workers"]["work"]["collected_waiters" if how == "wait" else "in_progress"]
    assert held_item[0]["scope_path"] == [stream["stream_id"]]

    held.runs.clear()
    members = await resume(impl, snapshot, held, monkeypatch, bounded)
    assert sorted(members) == [0, 10, 20]
    assert members[-1] == 20  # the member arriving after the resume comes last
    assert held.runs == [2]  # the finished branches do not run again


@pytest.mark.upstream
@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("workflows", "celery_workflows"), ("celery_workflows", "workflows")],
)
@pytest.mark.parametrize("how", ["wait", "body"])
async def test_a_snapshot_mid_fan_in_resumes_in_the_other_implementation(
    get_impl: Any,
    bounded: Any,
    monkeypatch: pytest.MonkeyPatch,
    producer: str,
    consumer: str,
    how: str,
) -> None:
    held = Held(how)
    snapshot = await snapshot_mid_fan_in(get_impl(producer), held, monkeypatch, bounded)
    held.runs.clear()
    members = await resume(get_impl(consumer), snapshot, held, monkeypatch, bounded)
    assert sorted(members) == [0, 10, 20]
    assert held.runs == [2]
