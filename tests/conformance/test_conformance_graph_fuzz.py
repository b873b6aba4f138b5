"""Random workflow shapes validate alike on upstream and on celery_workflows.

Each shape is a handful of steps over a few event classes: joins, ``list[E]`` fan-outs and
fan-ins, subclass routing, human-in-the-loop events, ``@catch_error`` handlers. Both
packages build the same workflow; construction and ``validate()`` must end the same way
(same result, or same exception type and message). Shapes come from a fixed seed, so a
failure reproduces.
"""

from __future__ import annotations

import random
import re
from types import SimpleNamespace
from typing import Any

import pytest
from workflow_shapes import Shape, build, random_shape


def _sorted_names(message: str) -> str:
    # Upstream lists the events of one message in set order; this package sorts them.
    return re.sub(
        r"(?<=: )(\w+(?:, \w+)+)$", lambda m: ", ".join(sorted(m.group(1).split(", "))), message
    )


def outcome(impl: SimpleNamespace, shape: Shape) -> tuple[Any, ...]:
    """How building, constructing and validating the shape's workflow ends."""
    stage = "decorate"
    try:
        workflow = build(impl, shape)
        stage = "construct"
        instance = workflow()
        stage = "validate"
        return ("ok", instance.validate())
    except Exception as exc:
        return (stage, type(exc).__name__, _sorted_names(str(exc)))


@pytest.mark.parametrize("seed", range(4))
def test_random_workflow_shapes_validate_as_upstream(seed: int, get_impl: Any) -> None:
    theirs, ours = get_impl("workflows"), get_impl("celery_workflows")
    rng = random.Random(seed)
    differing = []
    for _ in range(150):
        shape = random_shape(rng)
        expected, found = outcome(theirs, shape), outcome(ours, shape)
        if expected != found:
            differing.append((shape, expected, found))
    assert differing == []


def test_the_shapes_reach_every_kind_of_outcome(get_impl: Any) -> None:
    rng = random.Random(0)
    upstream = get_impl("workflows")
    found = [outcome(upstream, random_shape(rng)) for _ in range(150)]
    messages = [str(o[-1]) for o in found if o[0] != "ok"]
    assert {o[1] for o in found if o[0] == "ok"} == {True, False}
    for start in (
        "Graph validation failed",
        "The following events are consumed but never produced",
        "The following events are produced but never consumed",
    ):
        assert any(m.startswith(start) for m in messages), start
    assert any("joins event parameters" in m for m in messages)
    assert any("no returned-list producer" in m for m in messages)
