"""Encoding state for snapshots and stores: upstream's public helpers of
``workflows.context.state_store`` under the same names (``state_store`` re-exports them).

A DictState is encoded key by key (``{"_data": {key: serialized value}}``), a typed model
whole by the serializer. Decoding looks at the payload's shape, never at the class names
it records: with a ``JsonSerializer`` a typed model comes back only if its class is
registered (``JsonSerializer(allowed_types=[...])``), as everywhere in this package.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from .._serializers import BaseSerializer
from ._dict_state import DictState

#: Keys that prebuilt agents keep in state and that may not serialize: skipped with a
#: warning instead of failing the snapshot (upstream's list).
KNOWN_UNSERIALIZABLE_KEYS: tuple[str, ...] = ("memory",)


class UnserializableKeyWarning(Warning):
    """A known unserializable key was left out of a snapshot; set it again after restoring."""


warnings.simplefilter("once", UnserializableKeyWarning)


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


def decode_state(state_data: Any, serializer: BaseSerializer) -> BaseModel:
    """State data back to a model, by its shape: None is an empty DictState, a
    ``{"_data": ...}`` wrapper a DictState, anything else a serialized model."""
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
        return _model_from(serializer.deserialize(state_data), "string")
    if isinstance(state_data, dict):
        if "_data" in state_data:
            return deserialize_dict_state_data(state_data, serializer)
        return _model_from(serializer.deserialize(json.dumps(state_data)), "dict")
    raise ValueError(
        f"Unrecognized state payload of type {type(state_data).__name__}; refusing to decode"
    )


def deserialize_state_from_dict(
    serialized_state: dict[str, Any],
    serializer: BaseSerializer,
    state_type: type[BaseModel] | None = None,
) -> BaseModel:
    """The model of a state section (``state_type`` is ignored, as upstream does: the
    payload's shape decides)."""
    return decode_state(serialized_state.get("state_data"), serializer)


def decode_seed_state(serialized_state: dict[str, Any], serializer: BaseSerializer) -> BaseModel:
    """Check that a state section is in-memory, then decode it."""
    parse_in_memory_state(serialized_state)
    return deserialize_state_from_dict(serialized_state, serializer)
