"""``context.state_store`` and ``context.context_types`` used directly, without a run:
``InMemoryStateStore``, the dotted-path helpers, ``merge_state``, the encode/decode
helpers, the snapshot models and their version. In-process, on upstream and on ours.
"""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, computed_field


@pytest.fixture(params=[pytest.param("workflows", marks=pytest.mark.upstream), "celery_workflows"])
def impl(request: pytest.FixtureRequest, get_impl: Any) -> SimpleNamespace:
    """Upstream ``workflows`` or ``celery_workflows``, with its state modules."""
    loaded: SimpleNamespace = get_impl(request.param)
    return SimpleNamespace(
        **vars(loaded),
        ss=importlib.import_module(f"{request.param}.context.state_store"),
        types=importlib.import_module(f"{request.param}.context.context_types"),
    )


class Parent(BaseModel):
    """A state model a child model extends."""

    a: int = 0
    tags: dict[str, int] = {}

    @property
    def doubled(self) -> int:
        """A property a dotted path may read."""
        return self.a * 2

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        """A computed field a dotted path may read."""
        return f"a={self.a}"


class Child(Parent):
    """Extends Parent."""

    b: int = 0


class Other(BaseModel):
    """Unrelated to Parent."""

    z: int = 0


class Required(BaseModel):
    """A model without defaults."""

    needed: int


async def test_in_memory_state_store_is_built_from_an_initial_state(impl: SimpleNamespace) -> None:
    store = impl.ss.InMemoryStateStore(impl.DictState())
    await store.set("user.profile.name", "Ada")
    await store.set("items", [1, 2])
    async with store.edit_state() as state:
        state["get"] = "value"
    assert await store.get("user.profile.name") == "Ada"
    assert await store.get("items.1") == 2
    assert await store.get("get") == "value"
    assert await store.get("nope", default="d") == "d"
    with pytest.raises(ValueError, match="Path 'nope' not found in state"):
        await store.get("nope")
    state = await store.get_state()
    assert isinstance(state, impl.DictState)
    assert dict(state.items()) == {
        "user": {"profile": {"name": "Ada"}},
        "items": [1, 2],
        "get": "value",
    }
    await store.clear()
    assert dict((await store.get_state()).items()) == {}


async def test_in_memory_state_store_round_trips_through_to_dict(impl: SimpleNamespace) -> None:
    store = impl.ss.InMemoryStateStore(impl.DictState())
    await store.set("count", 3)
    await store.set("keys", {"a": 1})
    payload = store.to_dict(impl.JsonSerializer())
    assert payload["store_type"] == "in_memory"
    assert payload["state_type"] == "DictState"
    assert payload["state_module"] == f"{impl.name}.context.state_store"
    assert payload["state_data"] == {"_data": {"count": "3", "keys": '{"a": 1}'}}
    restored = impl.ss.InMemoryStateStore.from_dict(payload, impl.JsonSerializer())
    assert await restored.get("keys.a") == 1
    empty = impl.ss.InMemoryStateStore.from_dict({}, impl.JsonSerializer())
    assert isinstance(await empty.get_state(), impl.DictState)


async def test_typed_in_memory_state_store_edits_its_model(impl: SimpleNamespace) -> None:
    store = impl.ss.InMemoryStateStore(Child())
    async with store.edit_state() as state:
        state.a = 4
    await store.set("tags.x", 1)
    assert await store.get("doubled") == 8
    assert await store.get("label") == "a=4"
    assert (await store.get_state()).model_dump() == {
        "a": 4,
        "tags": {"x": 1},
        "b": 0,
        "label": "a=4",
    }
    await store.set_state(Parent(a=9))
    assert (await store.get_state()).model_dump() == {"a": 9, "tags": {}, "b": 0, "label": "a=9"}


def test_paths_prefer_stored_keys_over_mapping_methods(impl: SimpleNamespace) -> None:
    ss = impl.ss
    state = ss.DictState(items=1, keys={"a": 2})
    ss.set_by_path(state, "values.x", 5)
    ss.set_by_path(state, "get", 6)
    assert ss.get_by_path(state, "items") == 1
    assert ss.get_by_path(state, "keys.a") == 2
    assert ss.get_by_path(state, "values.x") == 5
    assert state.get("get") == 6
    assert ss.traverse_path_step(state, "items") == 1
    assert ss.get_by_path(state, "copy", "absent") == "absent"
    assert ss.get_by_path(state, "") is state
    assert sorted(state.keys()) == ["get", "items", "keys", "values"]


def test_path_helpers_raise_as_upstream(impl: SimpleNamespace) -> None:
    ss = impl.ss
    with pytest.raises(ValueError, match=r"^Path cannot be empty$"):
        ss.set_by_path(ss.DictState(), "", 1)
    deep = ".".join(["k"] * (ss.MAX_DEPTH + 1))
    with pytest.raises(ValueError, match=rf"^Path length exceeds {ss.MAX_DEPTH} segments$"):
        ss.get_by_path(ss.DictState(), deep)
    with pytest.raises(ValueError, match=r"^Path 'a.b' not found in state$"):
        ss.get_by_path(ss.DictState(a=1), "a.b")
    model = Child(tags={"t": 1})
    ss.assign_path_step(model, "a", 3)
    assert ss.traverse_path_step(model, "doubled") == 6
    assert ss.is_declared_model_path_segment(ss.DictState(), "items") is False


def test_set_by_path_copy_leaves_the_original_alone(impl: SimpleNamespace) -> None:
    ss = impl.ss
    original = ss.DictState(user={"name": "a", "tags": [1]})
    copied = ss.set_by_path_copy(original, "user.name", "b")
    assert original["user"] == {"name": "a", "tags": [1]}
    assert copied["user"] == {"name": "b", "tags": [1]}
    typed = Child(tags={"x": 1})
    changed = ss.set_by_path_copy(typed, "tags.y", 2)
    assert typed.tags == {"x": 1} and changed.tags == {"x": 1, "y": 2}


def test_merge_state_replaces_merges_or_refuses(impl: SimpleNamespace) -> None:
    merge = impl.ss.merge_state
    current = Child(a=1, b=2)
    assert merge(current, Child(a=5)).model_dump() == {"a": 5, "tags": {}, "b": 0, "label": "a=5"}
    merged = merge(current, Parent(a=7, tags={"k": 1}))
    assert type(merged) is Child
    assert merged.model_dump() == {"a": 7, "tags": {"k": 1}, "b": 2, "label": "a=7"}
    with pytest.raises(ValueError) as info:
        merge(current, Other())
    assert str(info.value) == "State must be of type Child or a parent type, got Other"
    with pytest.raises(ValueError, match="State must be of type DictState or a parent type"):
        merge(impl.DictState(), Other())


def test_dict_state_data_helpers_round_trip(impl: SimpleNamespace) -> None:
    ss, serializer = impl.ss, impl.JsonSerializer()
    state = ss.DictState(n=1, nested={"a": [1, 2]})
    data = ss.serialize_dict_state_data(state, serializer)
    assert data == {"_data": {"n": "1", "nested": '{"a": [1, 2]}'}}
    back = ss.deserialize_dict_state_data(data, serializer)
    assert dict(back.items()) == {"n": 1, "nested": {"a": [1, 2]}}
    encoded, name, module = ss.encode_state(state, serializer)
    assert (encoded, name, module) == (data, "DictState", f"{impl.name}.context.state_store")
    payload = ss.create_in_memory_payload(state, serializer)
    assert isinstance(payload, ss.InMemorySerializedState)
    assert payload.model_dump()["state_data"] == data
    assert dict(ss.decode_state(data, serializer).items()) == {"n": 1, "nested": {"a": [1, 2]}}
    assert isinstance(ss.decode_state(None, serializer), ss.DictState)
    restored = ss.deserialize_state_from_dict({"state_data": data}, serializer)
    assert dict(restored.items()) == dict(back.items())


class Typed(BaseModel):
    """A typed state model kept in an InMemoryStateStore and serialized."""

    counter: int = 0
    name: str = ""


async def test_a_typed_state_payload_deserializes_to_its_model(impl: SimpleNamespace) -> None:
    ss, serializer = impl.ss, impl.JsonSerializer()
    serialized = ss.InMemoryStateStore(Typed(counter=100, name="typed")).to_dict(serializer)
    assert serialized["state_type"] == "Typed"
    for restored in (
        ss.deserialize_state_from_dict(serialized, serializer),
        ss.deserialize_state_from_dict(serialized, serializer, state_type=Typed),
        ss.decode_seed_state(serialized, serializer),
        await ss.InMemoryStateStore.from_dict(serialized, serializer).get_state(),
    ):
        assert type(restored) is Typed
        assert restored.model_dump() == {"counter": 100, "name": "typed"}


async def test_a_typed_state_payload_round_trips_through_json(impl: SimpleNamespace) -> None:
    ss, serializer = impl.ss, impl.JsonSerializer()
    store = ss.InMemoryStateStore(Child(a=2, b=3))
    await store.set("tags", {"k": 1})
    text = json.dumps(store.to_dict(serializer))
    restored = ss.deserialize_state_from_dict(json.loads(text), serializer)
    assert type(restored) is Child
    assert restored.model_dump() == {"a": 2, "tags": {"k": 1}, "b": 3, "label": "a=2"}


def test_state_codec_errors_are_value_errors(impl: SimpleNamespace) -> None:
    ss, serializer = impl.ss, impl.JsonSerializer()
    with pytest.raises(ValueError, match=r"^Failed to serialize state value for key bad: "):
        ss.serialize_dict_state_data(ss.DictState(bad=object()), serializer)
    with pytest.raises(
        ValueError, match=r"^Cannot parse store_type 'redis' as InMemorySerializedState"
    ):
        ss.parse_in_memory_state({"store_type": "redis"})
    assert ss.parse_in_memory_state({"state_data": None}).store_type == "in_memory"
    with pytest.raises(ValueError, match=r"^Unrecognized state payload of type int"):
        ss.decode_state(5, serializer)
    with pytest.raises(ValueError, match=r"^State must have defaults for all fields"):
        ss.create_cleared_state(Required)


def test_a_known_unserializable_key_is_skipped_with_a_warning(impl: SimpleNamespace) -> None:
    ss = impl.ss
    assert ss.KNOWN_UNSERIALIZABLE_KEYS == ("memory",)
    with pytest.warns(ss.UnserializableKeyWarning):
        data = ss.serialize_dict_state_data(
            ss.DictState(memory=object(), n=1), impl.JsonSerializer()
        )
    assert data == {"_data": {"n": "1"}}


def typed_workflows(impl: SimpleNamespace) -> tuple[Any, Any, Any]:
    """A workflow on Parent state, a subclass on Child state, a sibling on Other state."""
    StartEvent, StopEvent, step, Context = impl.StartEvent, impl.StopEvent, impl.step, impl.Context

    class OnParent(impl.Workflow):
        @step
        async def begin(self, ctx: Context[Parent], ev: StartEvent) -> StopEvent:
            return StopEvent()

    class OnChild(OnParent):
        @step
        async def more(self, ctx: Context[Child], ev: StartEvent) -> None:
            return None

    class OnOther(OnParent):
        @step
        async def more(self, ctx: Context[Other], ev: StartEvent) -> None:
            return None

    return OnParent, OnChild, OnOther


def test_infer_state_type_picks_the_most_derived_model(impl: SimpleNamespace) -> None:
    on_parent, on_child, on_other = typed_workflows(impl)
    assert impl.ss.infer_state_type(on_parent()) is Parent
    assert impl.ss.infer_state_type(on_child()) is Child
    with pytest.raises(ValueError, match=r"^Multiple state types are not in a compatible"):
        impl.ss.infer_state_type(on_other())


def test_context_types_name_the_current_snapshot_version(impl: SimpleNamespace) -> None:
    types = impl.types
    assert types.CURRENT_SERIALIZED_VERSION == 2
    fresh = types.SerializedContext().model_dump()
    assert fresh["version"] == 2 and fresh["workers"] == {} and fresh["state"] == {}
    v1 = types.SerializedContext.from_dict_auto(
        {"version": 1, "workers": {"s": {"in_progress": ["ev"]}}}
    )
    assert v1.version == 2 and v1.workers["s"].in_progress[0].event == "ev"
    v0 = types.SerializedContext.from_dict_auto(
        {"queues": {"s": '["e1"]'}, "in_progress": {"s": ["e0"]}, "is_running": True}
    )
    assert [a.event for a in v0.workers["s"].queue] == ["e0", "e1"] and v0.is_running
    with pytest.raises(ValueError, match="version=3; this library supports up to version 2"):
        types.SerializedContext.from_dict_auto({"version": 3})


def test_context_types_export_upstreams_models(get_impl: Any) -> None:
    names = {
        pkg: {n for n in vars(importlib.import_module(f"{pkg}.context.context_types"))}
        for pkg in ("workflows", "celery_workflows")
    }
    public = {n for n in names["workflows"] if n.startswith("Serialized") or n.isupper()}
    public -= {"MODEL_T"}
    assert public <= names["celery_workflows"]
