"""``representation``: the graph model of a workflow, built the same as upstream's.

Each test builds the same workflow on upstream and on celery_workflows and compares what
``get_workflow_representation`` / ``representation.validate`` return, as plain data.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from workflow_shapes import build, random_shape

REFERENCE, OURS = "workflows", "celery_workflows"
_loaded: dict[str, SimpleNamespace] = {}


@pytest.fixture(autouse=True)
def implementations(get_impl: Any) -> None:
    """Both implementations' public surface, for ``load_impl``."""
    for pkg in (REFERENCE, OURS):
        _loaded[pkg] = get_impl(pkg)


def load_impl(pkg: str) -> SimpleNamespace:
    """One implementation's public surface (loaded by the ``implementations`` fixture)."""
    return _loaded[pkg]


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON config for ``ResourceConfig``, in the working directory."""
    (tmp_path / "cfg.json").write_text(json.dumps({"llm": {"model": "m", "temp": 1}}))
    monkeypatch.chdir(tmp_path)


class Cfg(BaseModel):
    """The model a ResourceConfig loads."""

    model: str
    temp: int = 0


def get_db() -> str:
    """Make a db."""
    return "db"


def rich_workflow(impl: SimpleNamespace) -> Any:
    """Steps with resources, a config, subclass routing, a fan-out, human input."""
    resource = impl.resource
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    def get_client(db: Annotated[str, resource.Resource(get_db)]) -> str:
        return "client"

    class Ask(impl.InputRequiredEvent):
        prefix: str = ""

    class Reply(impl.HumanResponseEvent):
        response: str = ""

    class Base(Event):
        n: int = 0

    class Sub(Base):
        pass

    class Item(Event):
        pass

    class Done(Event):
        pass

    llm = resource.ResourceConfig("cfg.json", path_selector="llm")

    class Rich(impl.Workflow):
        """A workflow doc."""

        @step
        async def begin(
            self, ev: StartEvent, client: Annotated[str, resource.Resource(get_client)]
        ) -> Ask | Sub | Base:
            """Begin doc."""
            return Sub()

        @step(accept_event_subclasses=True)
        async def base(self, ev: Base, cfg: Annotated[Cfg, llm]) -> list[Item]:
            return [Item()]

        @step
        async def item(self, ev: Item) -> Done:
            return Done()

        @step
        async def gather(self, ev: list[Done]) -> StopEvent:
            return StopEvent()

        @step
        async def answer(
            self, ev: Reply, db: Annotated[str, resource.Resource(get_db)]
        ) -> StopEvent:
            return StopEvent()

    return Rich


def graph_data(pkg: str, factory: Any = rich_workflow, as_instance: bool = False) -> dict[str, Any]:
    """The representation of ``factory``'s workflow as JSON data, edges sorted; the
    docstrings of the package's own StartEvent and StopEvent (in their schemas) left out."""
    impl = load_impl(pkg)
    representation = importlib.import_module(f"{pkg}.representation")
    workflow = factory(impl)
    data: dict[str, Any] = representation.get_workflow_representation(
        workflow() if as_instance else workflow
    ).model_dump(mode="json")
    for node in data["nodes"]:
        if node["id"] in ("StartEvent", "StopEvent") and node.get("event_schema"):
            node["event_schema"].pop("description", None)
    # With subclass routing the edges into a step follow a set of classes (upstream
    # too): their order is not stable from one process to the next.
    data["edges"].sort(key=lambda e: (e["source"], e["target"], str(e["label"])))
    return data


def test_representation_of_a_workflow_matches_upstream() -> None:
    ours, theirs = graph_data(OURS), graph_data(REFERENCE)
    assert ours == theirs
    kinds = {n["node_type"] for n in ours["nodes"]}
    assert kinds == {"step", "event", "external", "resource", "resource_config"}


def test_representation_of_an_instance_matches_upstream() -> None:
    assert graph_data(OURS, as_instance=True) == graph_data(REFERENCE, as_instance=True)


def test_filtering_node_types_matches_upstream() -> None:
    def filtered(pkg: str) -> tuple[list[Any], list[Any]]:
        representation = importlib.import_module(f"{pkg}.representation")
        graph = representation.get_workflow_representation(rich_workflow(load_impl(pkg)))
        data = graph.filter_by_node_type("event", "resource_config").model_dump(mode="json")
        edges = sorted(data["edges"], key=lambda e: (e["source"], e["target"], str(e["label"])))
        return [n["id"] for n in data["nodes"]], edges

    assert filtered(OURS) == filtered(REFERENCE)


def test_representation_exports_upstream_names() -> None:
    ours = importlib.import_module(f"{OURS}.representation")
    theirs = importlib.import_module(f"{REFERENCE}.representation")
    assert sorted(ours.__all__) == sorted(theirs.__all__)
    for name in ("StepGraph", "GraphValidationError", "build_step_graph", "validate_graph"):
        assert hasattr(importlib.import_module(f"{OURS}.representation.validate"), name)


@pytest.mark.parametrize("pkg", [REFERENCE, OURS])
def test_graph_models_round_trip_through_json(pkg: str) -> None:
    representation = importlib.import_module(f"{pkg}.representation")
    graph = representation.get_workflow_representation(rich_workflow(load_impl(pkg)))
    again = representation.WorkflowGraph.model_validate_json(graph.model_dump_json())
    assert again == graph
    event = next(n for n in again.nodes if n.id == "Sub")
    assert isinstance(event, representation.WorkflowEventNode)
    assert event.is_subclass_of("Base") and not event.is_subclass_of("Item")
    step_node = representation.WorkflowStepNode(id="s", label="a_long_label")
    assert step_node.truncated_label(5) == "a_lo*"
    assert step_node.truncated_label(20) == "a_long_label"
    generic = representation.WorkflowGenericNode(id="g", label="g", node_type="agent")
    assert generic.is_subclass_of("agent") is False


def step_configs(workflow: Any) -> dict[str, Any]:
    """``{name: _step_config}`` of a workflow class's step methods."""
    return {
        name: value._step_config
        for name, value in vars(workflow).items()
        if hasattr(value, "_step_config")
    }


def _name(node: Any) -> str:
    return node if isinstance(node, str) else node.__name__


def step_graph_data(pkg: str, factory: Any) -> dict[str, Any]:
    """``build_step_graph`` and ``validate_graph`` of a workflow, with classes as names."""
    impl = load_impl(pkg)
    validate = importlib.import_module(f"{pkg}.representation.validate")
    workflow = factory(impl)
    configs = step_configs(workflow)
    handlers = [n for n, c in configs.items() if c.role == "catch_error"]
    graph = validate.build_step_graph(configs, impl.StartEvent, handlers)
    errors = validate.validate_graph(configs, impl.StartEvent, None, handlers)
    return {
        "outgoing": {_name(k): sorted(map(_name, v)) for k, v in graph.outgoing.items()},
        "events": sorted(map(_name, graph.event_types)),
        "steps": sorted(graph.step_names),
        "forward": sorted(map(_name, graph.forward_reachable)),
        "reverse": sorted(map(_name, graph.reverse_reachable)),
        "errors": [(e.check, e.message, e.hint, e.step_names) for e in errors],
    }


def flawed_workflow(impl: SimpleNamespace) -> Any:
    """An unreachable loop, a dead end, a dangling event, and a rescued step."""
    Event, StartEvent, StopEvent, step = impl.Event, impl.StartEvent, impl.StopEvent, impl.step

    class Loop(Event):
        pass

    class Recover(Event):
        pass

    class Answer(impl.HumanResponseEvent):
        pass

    class Flawed(impl.Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent | Answer:
            return StopEvent()

        @step
        async def spin(self, ev: Loop) -> Loop:
            return Loop()

        @impl.catch_error
        async def rescue(self, ev: impl.StepFailedEvent) -> Recover:
            return Recover()

        @step
        async def recover(self, ev: Recover) -> StopEvent:
            return StopEvent()

    return Flawed


@pytest.mark.parametrize("factory", [rich_workflow, flawed_workflow])
def test_build_step_graph_and_validate_graph_match_upstream(factory: Any) -> None:
    assert step_graph_data(OURS, factory) == step_graph_data(REFERENCE, factory)


def shape_graph(pkg: str, shape: Any) -> Any:
    """The representation of a random shape's workflow as data (edges sorted), or how
    building it failed. A class without a docstring inherits its package's Workflow
    docstring as description, upstream too: that text is the package's own."""
    impl = load_impl(pkg)
    representation = importlib.import_module(f"{pkg}.representation")
    try:
        workflow = build(impl, shape)
    except Exception as exc:
        return type(exc).__name__
    data: dict[str, Any] = representation.get_workflow_representation(workflow).model_dump(
        mode="json"
    )
    if data["description"] == inspect.getdoc(impl.Workflow):
        data["description"] = "<the Workflow docstring>"
    for node in data["nodes"]:
        if node.get("event_schema") and node["id"] in BUILTIN_EVENTS:
            node["event_schema"].pop("description", None)
    data["edges"].sort(key=lambda e: (e["source"], e["target"], str(e["label"])))
    return data


BUILTIN_EVENTS = {
    "StartEvent",
    "StopEvent",
    "InputRequiredEvent",
    "HumanResponseEvent",
    "StepFailedEvent",
}


@pytest.mark.parametrize("seed", range(2))
def test_representations_of_random_shapes_match_upstream(seed: int) -> None:
    rng = random.Random(seed)
    shapes = [random_shape(rng) for _ in range(100)]
    differing = [s for s in shapes if shape_graph(OURS, s) != shape_graph(REFERENCE, s)]
    assert differing == []
