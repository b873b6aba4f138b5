"""Random workflow shapes for the conformance tests, built on either implementation.

A shape is a handful of steps over a few event classes: joins, ``list[E]`` fan-outs and
fan-ins, subclass routing, human-in-the-loop events, ``@catch_error`` handlers. Step
``s0`` takes the StartEvent and the last step returns a StopEvent, so most shapes get past
construction to validation.
"""

from __future__ import annotations

import inspect
import random
from types import SimpleNamespace
from typing import Any, Union

Shape = dict[str, Any]
INPUTS = ["Start", "E1", "E2", "E3", "Base", "Reply"]
OUTPUTS = ["Stop", "E1", "E2", "E3", "Ask", "None", "Reply"]


def random_shape(rng: random.Random) -> Shape:
    """Steps ``s0`` (takes StartEvent) .. ``sN`` (returns StopEvent), maybe handlers."""
    steps: dict[str, Any] = {}
    for k in range(rng.randint(1, 5)):
        roll = rng.random()
        if k == 0:
            params = [("ev", False, "Start")]
        elif roll < 0.12:
            params = [("a", False, rng.choice(INPUTS[1:4])), ("b", False, rng.choice(INPUTS[1:4]))]
        elif roll < 0.24:
            params = [("items", True, rng.choice(INPUTS[1:4]))]
        else:
            params = [("ev", False, rng.choice(INPUTS))]
        returns = rng.sample(OUTPUTS, rng.randint(1, 2))
        fan_out = rng.random() < 0.2 and returns[0] not in ("None", "Stop")
        steps[f"s{k}"] = [params, returns, fan_out, rng.random() < 0.15]
    last = steps[f"s{len(steps) - 1}"]
    if "Stop" not in last[1]:
        last[1], last[2] = ["Stop", *last[1][:1]], False
    handlers = {}
    if rng.random() < 0.3:
        for j in range(rng.randint(1, 2)):
            scope = None if rng.random() < 0.5 else [rng.choice([*steps, "zz"])]
            handlers[f"h{j}"] = (scope, rng.choice(["Stop", "E1", "E2", "None"]))
    return {"steps": steps, "handlers": handlers}


def _function(name: str, params: list[str], annotations: dict[str, Any]) -> Any:
    async def body(self: Any, **kwargs: Any) -> None:
        return None

    body.__name__, body.__qualname__ = name, f"Shaped.{name}"
    body.__annotations__ = annotations
    names = ["self", *params]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    body.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in names])  # type: ignore[attr-defined]
    return body


def build(impl: SimpleNamespace, shape: Shape) -> Any:
    """The workflow class of ``shape`` on one implementation."""
    events = impl.events

    class Base(events.Event):
        pass

    ev: dict[str, Any] = {"Start": events.StartEvent, "Stop": events.StopEvent, "Base": Base}
    ev.update({f"E{i}": type(f"E{i}", (Base if i == 3 else events.Event,), {}) for i in (1, 2, 3)})
    ev["Ask"] = type("Ask", (events.InputRequiredEvent,), {})
    ev["Reply"] = type("Reply", (events.HumanResponseEvent,), {})
    ev["None"] = type(None)
    namespace: dict[str, Any] = {}
    for name, (params, returns, fan_out, subclasses) in shape["steps"].items():
        hints = {p: list[ev[t]] if many else ev[t] for p, many, t in params}
        members = [ev[r] for r in returns]
        if fan_out:
            members[0] = list[members[0]]
        hints["return"] = Union[tuple(members)] if len(members) > 1 else members[0]  # noqa: UP007
        function = _function(name, [p for p, _, _ in params], hints)
        decorate = impl.step(accept_event_subclasses=True) if subclasses else impl.step
        namespace[name] = decorate(function)
    for name, (scope, returned) in shape["handlers"].items():
        hints = {"ev": events.StepFailedEvent, "return": ev[returned]}
        function = _function(name, ["ev"], hints)
        decorate = impl.catch_error if scope is None else impl.catch_error(for_steps=scope)
        namespace[name] = decorate(function)
    return type("Shaped", (impl.Workflow,), namespace)
