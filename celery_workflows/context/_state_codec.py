"""Encoding state for snapshots and stores: upstream's public helpers of
``workflows.context.state_store`` under the same names (``state_store`` re-exports them).

A DictState is encoded key by key (``{"_data": {key: serialized value}}``), a typed model
whole by the serializer. Decoding looks at the payload's shape; the class name a typed
payload records resolves only against classes this process holds (DESIGN invariant 10):
those registered on a ``JsonSerializer`` (``allowed_types=[...]``), a ``state_type``
passed in, and the state models this process keeps in a local store or encodes itself
(:func:`register_state_type`), so a ``to_dict()`` payload loads back where it was made.
"""

from __future__ import annotations

import json
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from .._serializers import BaseSerializer, JsonSerializer, qualified_name
from ._dict_state import DictState

#: Keys that prebuilt agents keep in state and that may not serialize: skipped with a
#: warning instead of failing the snapshot (upstream's list).
KNOWN_UNSERIALIZABLE_KEYS: tuple[str, ...] = ("memory",)


class UnserializableKeyWarning(Warning):
    """A known unserializable key was left out of a snapshot; set it again after restoring."""


warnings.simplefilter("once", UnserializableKeyWarning)

#: Typed state models this process holds in a store or has encoded, by record name: a
#: payload naming one of them decodes without registering it again (it imports nothing).
_state_types: weakref.WeakValueDictionary[str, type[BaseModel]] = weakref.WeakValueDictionary()


def _names(cls: type[Any]) -> tuple[str, str]:
    return qualified_name(cls), f"{cls.__module__}.{cls.__qualname__}"


def register_state_type(cls: type[BaseModel]) -> None:
    """Let state payloads naming ``cls`` decode in this process (DictState needs none)."""
    if cls is not DictState:
        for name in _names(cls):
            _state_types[name] = cls


class InMemorySerializedState(BaseModel):
    """The ``state`` section of a snapshot made of in-memory state."""

    store_type: Literal["in_memory"] = "in_memory"
    state_type: str = "DictState"
    state_module: str = "celery_workflows.context.state_store"
    state_data: Any = None

    @model_validator(mode="before")
    @classmethod
    def default_store_type(cls, data: Any) -> Any:
        """A payload without ``store_type`` is an in-memory one (older snapshots)."""
        if isinstance(data, dict) and "store_type" not in data:
            return {**data, "store_type": "in_memory"}
        return data


def is_durable_serialized_state(data: dict[str, Any] | None) -> bool:
    """Whether a state section names a durable store (anything but in-memory state)."""
    return bool(data) and (data or {}).get("store_type", "in_memory") != "in_memory"


def parse_in_memory_state(data: dict[str, Any]) -> InMemorySerializedState:
    """Read a state section; ValueError if it belongs to another kind of store."""
    store_type = data.get("store_type")
    if store_type not in ("in_memory", None):
        raise ValueError(
            f"Cannot parse store_type '{store_type}' as InMemorySerializedState. "
            "Use the appropriate store's from_dict() method."
        )
    return InMemorySerializedState.model_validate(data)


def serialize_dict_state_data(
    state: DictState,
    serializer: BaseSerializer,
    known_unserializable_keys: tuple[str, ...] = KNOWN_UNSERIALIZABLE_KEYS,
    encode: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """``{"_data": {key: encoded value}}``; ValueError naming the key that fails (a known
    unserializable key is skipped with an UnserializableKeyWarning)."""
    encode = encode or serializer.serialize
    data: dict[str, Any] = {}
    for key, value in state.items():
        try:
            data[key] = encode(value)
        except Exception as exc:
            if key in known_unserializable_keys:
                warnings.warn(
                    f"Skipping serialization of known unserializable key: {key} -- set it "
                    "again after the state is restored.",
                    category=UnserializableKeyWarning,
                    stacklevel=2,
                )
                continue
            raise ValueError(f"Failed to serialize state value for key {key}: {exc}") from exc
    return {"_data": data}


def deserialize_dict_state_data(data: dict[str, Any], serializer: BaseSerializer) -> DictState:
    """Inverse of :func:`serialize_dict_state_data`; ValueError naming the key that fails."""
    values: dict[str, Any] = {}
    for key, value in (data.get("_data") or {}).items():
        try:
            values[key] = serializer.deserialize(value)
        except Exception as exc:
            raise ValueError(f"Failed to deserialize state value for key {key}: {exc}") from exc
    return DictState(_data=values)


def encode_state(
    state: BaseModel,
    serializer: BaseSerializer,
    known_unserializable_keys: tuple[str, ...] = KNOWN_UNSERIALIZABLE_KEYS,
) -> tuple[Any, str, str]:
    """``(state data, class name, module)`` of a state model."""
    if isinstance(state, DictState):
        data: Any = serialize_dict_state_data(state, serializer, known_unserializable_keys)
    else:
        register_state_type(type(state))
        data = serializer.serialize(state)
    return data, type(state).__name__, type(state).__module__


def create_in_memory_payload(
    state: BaseModel,
    serializer: BaseSerializer,
    known_unserializable_keys: tuple[str, ...] = KNOWN_UNSERIALIZABLE_KEYS,
) -> InMemorySerializedState:
    """The state section of a snapshot of ``state``."""
    data, name, module = encode_state(state, serializer, known_unserializable_keys)
    return InMemorySerializedState(state_type=name, state_module=module, state_data=data)


def encode_state_payload(state: BaseModel, serializer: BaseSerializer) -> dict[str, Any]:
    """The ``state`` section of a snapshot, as a dict."""
    return create_in_memory_payload(state, serializer).model_dump()


def _model_from(value: Any, what: str) -> BaseModel:
    if isinstance(value, BaseModel):
        return value
    raise ValueError(
        f"Unrecognized state payload: {what} decoding to {type(value).__name__}; expected a "
        "typed model payload or a {'_data': ...} DictState wrapper"
    )


def _resolving(
    serializer: BaseSerializer, data: Any, state_type: type[BaseModel] | None
) -> BaseSerializer:
    """``serializer``, made to resolve the state model that ``data`` names when that is
    ``state_type`` or a state type of this process; ValueError when it names no known
    class (nothing is imported)."""
    if not isinstance(serializer, JsonSerializer) or not isinstance(data, dict):
        return serializer
    name = data.get("qualified_name")
    if not data.get("__is_pydantic") or not isinstance(name, str) or serializer.lookup(name):
        return serializer
    if state_type is not None and name in _names(state_type):
        return serializer.with_types(state_type)
    known = _state_types.get(name)
    if known is not None:
        return serializer.with_types(known)
    serializer.resolve_class(name)  # raises, naming the class and how to register it
    return serializer


def decode_state(
    state_data: Any, serializer: BaseSerializer, state_type: type[BaseModel] | None = None
) -> BaseModel:
    """State data back to a model, by its shape: None is an empty DictState, a
    ``{"_data": ...}`` wrapper a DictState, anything else a serialized model (of a class
    registered on the serializer, ``state_type``, or a state type of this process)."""
    if isinstance(state_data, BaseModel):
        return state_data
    if state_data is None:
        return DictState()
    if isinstance(state_data, str):
        try:
            parsed: Any = json.loads(state_data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "_data" in parsed:
            return deserialize_dict_state_data(parsed, serializer)
        serializer = _resolving(serializer, parsed, state_type)
        return _model_from(serializer.deserialize(state_data), "string")
    if isinstance(state_data, dict):
        if "_data" in state_data:
            return deserialize_dict_state_data(state_data, serializer)
        serializer = _resolving(serializer, state_data, state_type)
        return _model_from(serializer.deserialize(json.dumps(state_data)), "dict")
    raise ValueError(
        f"Unrecognized state payload of type {type(state_data).__name__}; refusing to decode"
    )


def deserialize_state_from_dict(
    serialized_state: dict[str, Any],
    serializer: BaseSerializer,
    state_type: type[BaseModel] | None = None,
) -> BaseModel:
    """The model of a state section. The payload's shape decides, as upstream; a typed
    payload's class resolves against the serializer's registered types, ``state_type``
    and the state types of this process (upstream imports the class it names)."""
    return decode_state(serialized_state.get("state_data"), serializer, state_type)


def decode_seed_state(serialized_state: dict[str, Any], serializer: BaseSerializer) -> BaseModel:
    """Check that a state section is in-memory, then decode it."""
    parse_in_memory_state(serialized_state)
    return deserialize_state_from_dict(serialized_state, serializer)
