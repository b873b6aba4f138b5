"""Resources that depend on resources, as upstream: a factory takes ``Annotated[T,
Resource(...)]`` (or ``ResourceConfig``) parameters of its own, resolved first; cached
values are built once per workflow, an uncached one once per step's resolution; a cycle
is named by ``validate(validate_resources=True)``. Factories are local to each test, in a
module with ``from __future__ import annotations``, so every annotation is a string
resolved against the step's locals.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from pydantic import BaseModel


class Box:
    """A built resource; ``parts`` are the resources it was built from."""

    def __init__(self, label: str, *parts: Any) -> None:
        self.label = label
        self.parts = parts


class Settings(BaseModel):
    """A model a ResourceConfig loads."""

    x: int


async def test_a_factory_receives_the_resources_it_asks_for(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource.Resource,
    )
    built: list[str] = []

    def make_db() -> Box:
        built.append("db")
        return Box("db")

    async def make_repo(db: Annotated[Box, Resource(make_db)]) -> Box:
        built.append("repo")
        return Box("repo", db)

    def make_service(
        repo: Annotated[Box, Resource(make_repo)], db: Annotated[Box, Resource(make_db)]
    ) -> Box:
        built.append("service")
        return Box("service", repo, db)

    class Layered(impl.Workflow):
        @step
        async def s(self, ev: StartEvent, svc: Annotated[Box, Resource(make_service)]) -> StopEvent:
            repo, db = svc.parts
            return StopEvent(result=[svc.label, repo.label, db.label, repo.parts[0] is db])

    workflow = Layered()
    assert await bounded(workflow.run()) == ["service", "repo", "db", True]
    assert await bounded(workflow.run()) == ["service", "repo", "db", True]
    assert built == ["db", "repo", "service"]


async def test_a_cached_dependency_is_built_once_for_every_step_and_factory(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, Event, step, Resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.Event,
        impl.step,
        impl.resource.Resource,
    )
    calls: list[str] = []

    def make_pool() -> Box:
        calls.append("pool")
        return Box("pool")

    def make_reader(pool: Annotated[Box, Resource(make_pool)]) -> Box:
        return Box("reader", pool)

    class Mid(Event):
        pass

    class Shared(impl.Workflow):
        @step
        async def first(self, ev: StartEvent, pool: Annotated[Box, Resource(make_pool)]) -> Mid:
            return Mid()

        @step
        async def second(
            self, ev: Mid, reader: Annotated[Box, Resource(make_reader, cache=False)]
        ) -> StopEvent:
            return StopEvent(result=reader.parts[0].label)

    workflow = Shared()
    assert await bounded(workflow.run()) == "pool"
    assert await bounded(workflow.run()) == "pool"
    assert calls == ["pool"]


async def test_an_uncached_resource_is_built_once_per_step_resolution(
    impl: SimpleNamespace, bounded: Any
) -> None:
    StartEvent, StopEvent, step, Resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource.Resource,
    )
    calls: list[str] = []

    def make_session() -> Box:
        calls.append("session")
        return Box("session")

    def make_users(session: Annotated[Box, Resource(make_session, cache=False)]) -> Box:
        return Box("users", session)

    def make_orders(session: Annotated[Box, Resource(make_session, cache=False)]) -> Box:
        return Box("orders", session)

    class Unit(impl.Workflow):
        @step
        async def s(
            self,
            ev: StartEvent,
            users: Annotated[Box, Resource(make_users, cache=False)],
            orders: Annotated[Box, Resource(make_orders, cache=False)],
            session: Annotated[Box, Resource(make_session, cache=False)],
        ) -> StopEvent:
            return StopEvent(result=[users.parts[0] is session, orders.parts[0] is session])

    workflow = Unit()
    assert await bounded(workflow.run()) == [True, True]
    assert await bounded(workflow.run()) == [True, True]
    assert calls == ["session", "session"]


def cyclic_workflow(impl: SimpleNamespace) -> Any:
    """A step whose resource ``make_a`` needs ``make_b``, which needs ``make_a``."""
    StartEvent, StopEvent, step, Resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource.Resource,
    )

    def make_a(b: Annotated[Box, Resource(make_b)]) -> Box:
        return Box("a", b)

    def make_b(a: Annotated[Box, Resource(make_a)]) -> Box:
        return Box("b", a)

    class Cyclic(impl.Workflow):
        @step
        async def s(self, ev: StartEvent, a: Annotated[Box, Resource(make_a)]) -> StopEvent:
            return StopEvent(result="unreachable")

    return Cyclic


def test_validate_resources_names_a_circular_dependency(impl: SimpleNamespace) -> None:
    workflow = cyclic_workflow(impl)()
    assert workflow.validate() is False  # factories are not resolved unless asked
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.validate(validate_resources=True)
    prefix = "cyclic_workflow.<locals>."
    assert str(info.value) == (
        "Resource validation failed:\n"
        "  - In step 's', parameter 'a': Circular resource dependency detected: "
        f"{prefix}make_a -> {prefix}make_b -> {prefix}make_a"
    )


async def test_a_circular_dependency_fails_the_step_at_run(
    impl: SimpleNamespace, bounded: Any
) -> None:
    handler = cyclic_workflow(impl)().run()
    with pytest.raises(Exception, match="Circular resource dependency detected") as info:
        await bounded(handler)
    assert "cyclic_workflow.<locals>.make_a -> " in str(info.value)


def config_factory_workflow(impl: SimpleNamespace, config_file: str) -> Any:
    """A step whose factory takes a ResourceConfig read from ``config_file``."""
    StartEvent, StopEvent, step, resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource,
    )

    def make_client(cfg: Annotated[Settings, resource.ResourceConfig(config_file)]) -> Box:
        return Box(f"client-{cfg.x}")

    class Configured(impl.Workflow):
        @step
        async def s(
            self, ev: StartEvent, client: Annotated[Box, resource.Resource(make_client)]
        ) -> StopEvent:
            return StopEvent(result=client.label)

    return Configured


async def test_a_factory_receives_a_resource_config(
    impl: SimpleNamespace, bounded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "client.json").write_text(json.dumps({"x": 5}))
    workflow = config_factory_workflow(impl, "client.json")()
    assert await bounded(workflow.run()) == "client-5"


def test_validate_resources_builds_a_factory_from_its_config(
    impl: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sync: upstream's validate(validate_resources=True) calls asyncio.run().
    monkeypatch.chdir(tmp_path)
    (tmp_path / "client.json").write_text(json.dumps({"x": 5}))
    assert config_factory_workflow(impl, "client.json")().validate(validate_resources=True) is False


def test_a_missing_config_behind_a_factory_fails_validation_naming_the_chain(
    impl: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    workflow = config_factory_workflow(impl, "absent.json")()
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.validate()
    assert str(info.value) == (
        "Resource config validation failed:\n"
        "  - In step 's', parameter 'client' "
        "(config_factory_workflow.<locals>.make_client -> absent.json): "
        "No such file: absent.json"
    )
    assert workflow.validate(validate_resource_configs=False) is False


def test_a_bad_config_behind_a_factory_fails_validation_with_the_field(
    impl: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"x": "many"}))
    workflow = config_factory_workflow(impl, "bad.json")()
    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        workflow.run()
    message = str(info.value)
    assert message.startswith(
        "Resource config validation failed:\n  - In step 's', parameter 'client' "
        "(config_factory_workflow.<locals>.make_client -> bad.json): "
    )
    assert "x\n  Input should be a valid integer" in message


def test_validate_resources_names_the_step_of_a_failing_nested_factory(
    impl: SimpleNamespace,
) -> None:
    StartEvent, StopEvent, step, Resource = (
        impl.StartEvent,
        impl.StopEvent,
        impl.step,
        impl.resource.Resource,
    )

    def make_token() -> str:
        raise RuntimeError("TOKEN is not set")

    def make_api(token: Annotated[str, Resource(make_token)]) -> Box:
        return Box("api", token)

    class Api(impl.Workflow):
        @step
        async def call(self, ev: StartEvent, api: Annotated[Box, Resource(make_api)]) -> StopEvent:
            return StopEvent()

    with pytest.raises(impl.errors.WorkflowValidationError) as info:
        Api().validate(validate_resources=True)
    assert str(info.value) == (
        "Resource validation failed:\n  - In step 'call', parameter 'api': TOKEN is not set"
    )


async def test_factories_of_a_module_without_postponed_annotations_depend_on_each_other(
    impl: SimpleNamespace, bounded: Any
) -> None:
    from resource_shapes_eager import layered

    built: list[str] = []
    workflow_class = layered(impl, built)
    assert await bounded(workflow_class().run()) == ["base", "top"]
    assert built == ["base", "top"]
