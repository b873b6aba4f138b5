"""Behaviour of celery_workflows.resource: descriptors, the manager, config files."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ValidationError

from celery_workflows.resource import (
    Resource,
    ResourceConfig,
    ResourceDefinition,
    ResourceDescriptor,
    ResourceManager,
    resource_parameters,
)

_counter = itertools.count()


class Client:
    """A stand-in for an expensive resource; ``serial`` tells instances apart."""

    def __init__(self, *deps: Any) -> None:
        self.serial = next(_counter)
        self.deps = deps


class LLMConfig(BaseModel):
    model: str
    temperature: float = 0.0


class LooseConfig(BaseModel):
    extra: Any = None


def make_client() -> Client:
    return Client()


async def make_async_client() -> Client:
    await asyncio.sleep(0)
    return Client()


def make_uncached_client() -> Client:
    return Client()


def make_wrapper(inner: Annotated[Client, Resource(make_client)]) -> Client:
    return Client(inner)


async def make_outer(
    wrapper: Annotated[Client, Resource(make_wrapper)],
    direct: Annotated[Client, Resource(make_client)],
) -> Client:
    return Client(wrapper, direct)


def make_left(shared: Annotated[Client, Resource(make_uncached_client, cache=False)]) -> Client:
    return Client(shared)


def make_right(shared: Annotated[Client, Resource(make_uncached_client, cache=False)]) -> Client:
    return Client(shared)


def make_diamond(
    left: Annotated[Client, Resource(make_left, cache=False)],
    right: Annotated[Client, Resource(make_right, cache=False)],
) -> Client:
    return Client(left, right)


def cycle_a(b: Annotated[int, Resource(cycle_b)]) -> int:
    return b


def cycle_b(a: Annotated[int, Resource(cycle_a)]) -> int:
    return a


def make_self_cycle(me: Annotated[int, Resource(make_self_cycle)]) -> int:
    return me


def make_broken() -> Client:
    raise RuntimeError("cannot connect")


def make_unresolvable(x: Annotated[Client, DoesNotExist]) -> Client:  # noqa: F821
    return Client()


def tagged(tag: str, inner: Annotated[Client, Resource(make_client)]) -> tuple[str, Client]:
    return (tag, inner)


class Service:
    def __init__(self, client: Annotated[Client, Resource(make_client)]) -> None:
        self.client = client


class ServiceFactory:
    def __call__(self, client: Annotated[Client, Resource(make_client)]) -> Service:
        return Service(client)


@pytest.fixture
def manager() -> ResourceManager:
    return ResourceManager()


@pytest.fixture
def llm_json(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"llm": {"openai": {"model": "gpt", "temperature": 0.5}, "name": "x"}})
    )
    return path


# --- Resource and the manager ----------------------------------------------------------


async def test_resource_sync_factory_is_called(manager: ResourceManager) -> None:
    assert isinstance(await manager.get(Resource(make_client)), Client)


async def test_resource_async_factory_is_awaited(manager: ResourceManager) -> None:
    assert isinstance(await manager.get(Resource(make_async_client)), Client)


async def test_resource_callable_object_with_async_call_is_awaited(
    manager: ResourceManager,
) -> None:
    class Factory:
        async def __call__(self) -> Client:
            return Client()

    assert isinstance(await manager.get(Resource(Factory())), Client)


async def test_resource_class_with_async_call_is_constructed_not_awaited(
    manager: ResourceManager,
) -> None:
    class Handler:
        async def __call__(self) -> None:
            return None

    assert isinstance(await manager.get(Resource(Handler)), Handler)


async def test_resource_cached_by_default_returns_one_instance(manager: ResourceManager) -> None:
    first = await manager.get(Resource(make_client))
    assert await manager.get(Resource(make_client)) is first
    assert manager.get_all() == {"make_client": first}


async def test_resource_uncached_builds_a_new_instance_per_get(manager: ResourceManager) -> None:
    descriptor = Resource(make_client, cache=False)
    assert await manager.get(descriptor) is not await manager.get(descriptor)
    assert manager.get_all() == {}


async def test_resource_cache_is_per_manager() -> None:
    descriptor = Resource(make_client)
    assert await ResourceManager().get(descriptor) is not await ResourceManager().get(descriptor)


def test_resource_name_is_the_factory_qualname() -> None:
    assert Resource(make_client).name == "make_client"
    assert Resource(Client).name == "Client"
    assert Resource(lambda: 1).name.endswith("<locals>.<lambda>")


def test_resource_and_resource_config_are_descriptors(llm_json: Path) -> None:
    assert isinstance(Resource(make_client), ResourceDescriptor)
    assert isinstance(ResourceConfig(str(llm_json)), ResourceDescriptor)
    assert not isinstance("not a descriptor", ResourceDescriptor)


async def test_resource_dependencies_are_resolved_before_the_factory(
    manager: ResourceManager,
) -> None:
    outer = await manager.get(Resource(make_outer))
    wrapper, direct = outer.deps
    assert wrapper.deps == (direct,)


def test_resource_get_dependencies_lists_annotated_parameters() -> None:
    [(parameter, descriptor, type_annotation)] = Resource(make_wrapper).get_dependencies()
    assert (parameter, descriptor.name, type_annotation) == ("inner", "make_client", Client)
    assert Resource(make_client).get_dependencies() == []


async def test_resource_partial_factory_gets_its_dependencies(manager: ResourceManager) -> None:
    tag, inner = await manager.get(Resource(functools.partial(tagged, "x")))
    assert tag == "x" and inner is await manager.get(Resource(make_client))


async def test_resource_class_factory_gets_its_init_dependencies(
    manager: ResourceManager,
) -> None:
    service = await manager.get(Resource(Service))
    assert service.client is await manager.get(Resource(make_client))


async def test_resource_callable_object_gets_its_call_dependencies(
    manager: ResourceManager,
) -> None:
    service = await manager.get(Resource(ServiceFactory()))
    assert service.client is await manager.get(Resource(make_client))


def test_resource_localns_does_not_shadow_the_factory_module() -> None:
    resource = Resource(make_wrapper)
    resource.set_localns({"make_client": make_async_client})
    [(_, descriptor, _)] = resource.get_dependencies()
    assert descriptor.name == "make_client"


def test_resource_unresolvable_annotations_declare_no_dependencies() -> None:
    assert Resource(make_unresolvable).get_dependencies() == []


async def test_uncached_dependency_is_shared_within_one_get(manager: ResourceManager) -> None:
    diamond = Resource(make_diamond, cache=False)
    left, right = (await manager.get(diamond)).deps
    assert left.deps[0] is right.deps[0]
    again = await manager.get(diamond)
    assert again.deps[0].deps[0] is not left.deps[0]


async def test_resolution_scope_shares_uncached_values_across_gets(
    manager: ResourceManager,
) -> None:
    descriptor = Resource(make_client, cache=False)
    with manager.resolution_scope():
        first = await manager.get(descriptor)
        with manager.resolution_scope():
            assert await manager.get(descriptor) is first
    assert await manager.get(descriptor) is not first


async def test_circular_dependency_raises_with_the_chain(manager: ResourceManager) -> None:
    with pytest.raises(
        ValueError, match="Circular resource dependency detected: cycle_a -> cycle_b -> cycle_a"
    ):
        await manager.get(Resource(cycle_a))


async def test_self_dependency_is_circular(manager: ResourceManager) -> None:
    with pytest.raises(ValueError, match="make_self_cycle -> make_self_cycle"):
        await manager.get(Resource(make_self_cycle))


async def test_factory_error_propagates_and_leaves_the_manager_usable(
    manager: ResourceManager,
) -> None:
    with pytest.raises(RuntimeError, match="cannot connect"):
        await manager.get(Resource(make_broken))
    with pytest.raises(RuntimeError, match="cannot connect"):
        await manager.get(Resource(make_broken))
    assert manager.get_all() == {}


async def test_concurrent_gets_see_no_false_cycle_and_one_instance(
    manager: ResourceManager,
) -> None:
    async def slow_client() -> Client:
        await asyncio.sleep(0.01)
        return Client()

    results = await asyncio.gather(*(manager.get(Resource(slow_client)) for _ in range(5)))
    assert all(result is results[0] for result in results)


async def test_concurrent_scopes_do_not_share_uncached_values(manager: ResourceManager) -> None:
    descriptor = Resource(make_client, cache=False)

    async def one_step() -> object:
        with manager.resolution_scope():
            first = await manager.get(descriptor)
            await asyncio.sleep(0.01)
            assert await manager.get(descriptor) is first
            return first

    a, b = await asyncio.gather(one_step(), one_step())
    assert a is not b


async def test_set_value_is_returned_for_a_cached_resource(manager: ResourceManager) -> None:
    preset = Client()
    await manager.set("make_client", preset)
    assert await manager.get(Resource(make_client)) is preset
    assert manager.get_all()["make_client"] is preset


async def test_custom_descriptor_is_resolved_through_the_protocol(
    manager: ResourceManager,
) -> None:
    class Constant:
        name = "constant"
        cache = False

        async def resolve(self, manager: ResourceManager) -> int:
            return 42

        def set_type_annotation(self, type_annotation: Any) -> None:
            pass

        def set_localns(self, localns: dict[str, Any] | None) -> None:
            pass

        def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, type | None]]:
            return []

    assert isinstance(Constant(), ResourceDescriptor)
    assert await manager.get(Constant()) == 42


# --- ResourceConfig --------------------------------------------------------------------


async def test_resource_config_loads_the_annotated_model(
    manager: ResourceManager, llm_json: Path
) -> None:
    descriptor = ResourceConfig(str(llm_json), path_selector="llm.openai")
    descriptor.set_type_annotation(LLMConfig)
    assert await manager.get(descriptor) == LLMConfig(model="gpt", temperature=0.5)
    assert manager.get_all() == {f"{llm_json}.llm.openai": LLMConfig(model="gpt", temperature=0.5)}


def test_resource_config_name_is_the_file_plus_selector() -> None:
    assert ResourceConfig("a/b.json").name == "a/b.json"
    assert ResourceConfig("a/b.json", path_selector="x.y").name == "a/b.json.x.y"
    assert ResourceConfig("a/b.json").cache is True


def test_resource_config_keeps_label_and_description() -> None:
    descriptor = ResourceConfig("c.json", label="LLM", description="model settings")
    assert (descriptor.label, descriptor.description) == ("LLM", "model settings")


def test_resource_config_rejects_non_json_files() -> None:
    with pytest.raises(ValueError, match="Only JSON files can be used"):
        ResourceConfig("settings.yaml")


def test_resource_config_missing_file_fails_on_use_not_creation(tmp_path: Path) -> None:
    descriptor = ResourceConfig(str(tmp_path / "later.json"))
    descriptor.set_type_annotation(LLMConfig)
    with pytest.raises(FileNotFoundError, match=r"No such file: .*later\.json"):
        descriptor.call()


def test_resource_config_selector_must_lead_to_an_object(llm_json: Path) -> None:
    descriptor = ResourceConfig(str(llm_json), path_selector="llm.name")
    descriptor.set_type_annotation(LLMConfig)
    with pytest.raises(ValueError, match=r"at path llm\.name, got: <class 'str'>"):
        descriptor.call()
    missing = ResourceConfig(str(llm_json), path_selector="nope")
    missing.set_type_annotation(LLMConfig)
    with pytest.raises(ValueError, match="at path nope, got: <class 'NoneType'>"):
        missing.call()


def test_resource_config_validation_errors_propagate(llm_json: Path) -> None:
    descriptor = ResourceConfig(str(llm_json), path_selector="llm")
    descriptor.set_type_annotation(LLMConfig)
    with pytest.raises(ValidationError):
        descriptor.call()


def test_resource_config_without_a_model_class_cannot_load(llm_json: Path) -> None:
    with pytest.raises(ValueError, match="Class factory should be set"):
        ResourceConfig(str(llm_json)).call()


def test_resource_config_on_a_non_model_type_explains_the_fix(llm_json: Path) -> None:
    descriptor = ResourceConfig(str(llm_json))
    descriptor.set_type_annotation(dict)
    with pytest.raises(TypeError, match="must annotate a pydantic BaseModel subclass"):
        descriptor.call()


def test_resource_config_first_model_class_wins(llm_json: Path) -> None:
    descriptor = ResourceConfig(str(llm_json), path_selector="llm.openai")
    descriptor.set_type_annotation(LLMConfig)
    descriptor.set_type_annotation(LooseConfig)
    assert isinstance(descriptor.call(), LLMConfig)


def test_resource_config_loads_are_isolated_from_each_other(tmp_path: Path) -> None:
    path = tmp_path / "loose.json"
    path.write_text(json.dumps({"extra": {"k": [1]}}))
    descriptor = ResourceConfig(str(path))
    descriptor.set_type_annotation(LooseConfig)
    descriptor.call().extra["k"].append(2)
    assert descriptor.call().extra == {"k": [1]}


async def test_resource_config_can_feed_a_factory(manager: ResourceManager, llm_json: Path) -> None:
    selector = ResourceConfig(str(llm_json), path_selector="llm.openai")

    def make_llm(config: Annotated[LLMConfig, selector]) -> str:
        return config.model

    resource = Resource(make_llm)
    resource.set_localns({"LLMConfig": LLMConfig, "selector": selector})
    assert await manager.get(resource) == "gpt"


# --- ResourceDefinition ----------------------------------------------------------------


def test_resource_definition_holds_a_descriptor() -> None:
    definition = ResourceDefinition(name="client", resource=Resource(make_client))
    assert definition.type_annotation is None
    with pytest.raises(ValidationError):
        ResourceDefinition(name="client", resource="make_client")


# --- resource_parameters ---------------------------------------------------------------


def test_resource_parameters_finds_only_resource_parameters() -> None:
    def step(
        self: object,
        ev: int,
        client: Annotated[Client, Resource(make_client)],
        note: Annotated[str, "just documentation"],
        other: Annotated[Client, "doc", Resource(make_async_client)],
    ) -> None:
        pass

    found = resource_parameters(step, localns={"Client": Client})
    assert list(found) == ["client", "other"]
    assert [d.name for d in found.values()] == ["make_client", "make_async_client"]


def test_resource_parameters_sets_the_model_class_of_configs(llm_json: Path) -> None:
    config = ResourceConfig(str(llm_json), path_selector="llm.openai")

    def step(settings: Annotated[LLMConfig, config]) -> None:
        pass

    [descriptor] = resource_parameters(step, localns={"config": config}).values()
    assert descriptor is config
    assert isinstance(config.call(), LLMConfig)


async def test_resource_parameters_passes_localns_to_factories(
    manager: ResourceManager,
) -> None:
    class Local:
        pass

    def make_local() -> Local:
        return Local()

    def make_user(dep: Annotated[Local, Resource(make_local)]) -> tuple[str, Local]:
        return ("user", dep)

    def step(user: Annotated[tuple[str, Local], Resource(make_user)]) -> None:
        pass

    localns = {"Local": Local, "make_local": make_local, "make_user": make_user}
    [descriptor] = resource_parameters(step, localns=localns).values()
    tag, dep = await manager.get(descriptor)
    assert tag == "user" and isinstance(dep, Local)


def test_resource_parameters_reports_unresolvable_annotations() -> None:
    def step(x: Annotated[Missing, Resource(make_client)]) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(NameError, match="Missing"):
        resource_parameters(step)
