"""How the runtime turns events, state and errors into store payloads and back.

The in-memory store keeps live objects (:class:`LiveCodec`: no copies on the hot path, so
events may carry any Python object, as upstream allows in-process). Stores that persist
get JSON (:class:`JsonCodec`) resolved only against the workflow's registered types.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from .._serializers import JsonSerializer, record_name
from ..context.state_store import DictState, copy_for_edit
from ..errors import InvalidMessageError, StateValidationError
from ..events import Event, _dump_exception, _load_exception, truncated_message
from ..store.base import NewDelivery
from .json_rules import find_unstorable


class Codec(Protocol):
    """Payload conversions between the runtime and a run store."""

    #: True when state is validated against its model before it is encoded (persisted
    #: state must be valid to be read back; live state is kept as upstream keeps it).
    validates_state: bool

    def encode_event(self, event: Event) -> Any: ...
    def decode_event(self, payload: Any) -> Event: ...
    def encode_state(self, state: BaseModel) -> Any: ...
    def decode_state(self, payload: Any, *, for_edit: bool) -> BaseModel: ...
    def encode_error(self, exc: BaseException) -> dict[str, Any]: ...
    def decode_error(self, payload: dict[str, Any]) -> BaseException: ...


class LiveCodec:
    """Identity codec for the in-memory store; edits get a deep copy of the state."""

    validates_state = False

    def encode_event(self, event: Event) -> Any:
        return event

    def decode_event(self, payload: Any) -> Event:
        return payload  # type: ignore[no-any-return]

    def encode_state(self, state: BaseModel) -> Any:
        return state

    def decode_state(self, payload: Any, *, for_edit: bool) -> BaseModel:
        return copy_for_edit(payload) if for_edit else payload

    def encode_error(self, exc: BaseException) -> dict[str, Any]:
        return {**_dump_exception(exc), "exception": exc}

    def decode_error(self, payload: dict[str, Any]) -> BaseException:
        exc = payload.get("exception")
        return exc if isinstance(exc, BaseException) else _load_exception(payload)


def _check_json(value: Any, path: str) -> None:
    """Raise StateValidationError naming the first key path that is not JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StateValidationError(f"{path}: key {key!r} is not a string")
            _check_json(item, f"{path}[{key!r}]")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
        return
    raise StateValidationError(
        f"{path}: object of type {type(value).__name__} is not JSON serializable"
    )


def _not_an_event(payload: Any) -> str:
    """Why a payload did not decode to an event (an unknown type decodes to a plain dict)."""
    name = payload.get("qualified_name") if isinstance(payload, dict) else None
    if isinstance(name, str):
        return (
            f"event type {name!r} is not registered: it is no step's input or output and "
            "no Event subclass of that name is defined in this process (names read from "
            "data are never imported)"
        )
    return f"payload is not an event: {str(payload)[:200]}"


def _refuse_unstorable(value: Any, path: str) -> None:
    """Raise StateValidationError naming the path of a NaN, infinity or NUL in ``value``."""
    found = find_unstorable(value, path)
    if found is not None:
        raise StateValidationError(f"{found[0]}: {found[1]}")


class JsonCodec:
    """JSON payloads; classes resolve only against ``serializer``'s allowed types."""

    validates_state = True

    def __init__(
        self,
        serializer: JsonSerializer,
        state_type: type[BaseModel],
        max_event_bytes: int | None = None,
    ) -> None:
        self.serializer = serializer
        self.state_type = state_type
        self.max_event_bytes = max_event_bytes

    def encode_event(self, event: Event) -> Any:
        found = find_unstorable(event, "")
        if found is not None:
            where, why = found
            raise InvalidMessageError(f"event {type(event).__name__} field {where}: {why}")
        try:
            data = self.serializer.serialize_value(event)
        except (ValueError, RecursionError) as exc:
            # pydantic's depth limit (or Python's): the value cannot become JSON.
            raise InvalidMessageError(
                f"event {type(event).__name__} cannot be stored as JSON: it is nested too "
                f"deep or not serializable ({truncated_message(str(exc), 200)})"
            ) from exc
        _check_json(data, f"event {type(event).__name__}")
        if self.max_event_bytes is not None:
            size = len(json.dumps(data))
            if size > self.max_event_bytes:
                raise InvalidMessageError(
                    f"event {type(event).__name__} is {size} bytes as JSON, over the "
                    f"limit of {self.max_event_bytes} (max_event_bytes)"
                )
        return data

    def decode_event(self, payload: Any) -> Event:
        try:
            event = self.serializer.deserialize_value(payload)
        except Exception as exc:
            raise InvalidMessageError(f"event payload rejected: {exc}") from exc
        if not isinstance(event, Event):
            raise InvalidMessageError(_not_an_event(payload))
        return event

    def encode_state(self, state: BaseModel) -> Any:
        _refuse_unstorable(dict(state.items()) if isinstance(state, DictState) else state, "state")
        if isinstance(state, DictState):
            data: Any = {"_data": {k: self.serializer.serialize_value(v) for k, v in state.items()}}
        else:
            data = self.serializer.serialize_value(state)
        _check_json(data, "state")
        return data

    def decode_state(self, payload: Any, *, for_edit: bool) -> BaseModel:
        if payload is None:
            return self.state_type()
        if "_data" in payload and not payload.get("__is_pydantic"):
            return DictState(
                _data={k: self.serializer.deserialize_value(v) for k, v in payload["_data"].items()}
            )
        state = self.serializer.deserialize_value(copy.deepcopy(payload) if for_edit else payload)
        if not isinstance(state, BaseModel):
            raise StateValidationError(f"stored state decoded to {type(state).__name__}")
        return state

    def encode_error(self, exc: BaseException) -> dict[str, Any]:
        return _dump_exception(exc)

    def decode_error(self, payload: dict[str, Any]) -> BaseException:
        return _load_exception(payload, serializer=self.serializer)


def event_type_name(event_or_type: Event | type[Event]) -> str:
    """Qualified name of an event (type)."""
    cls = event_or_type if isinstance(event_or_type, type) else type(event_or_type)
    return record_name(cls)


def start_fingerprint(deliveries: Sequence[NewDelivery]) -> str:
    """A digest of what a run starts with: the step and event of each first delivery.

    Stored with the run, so that starting the same run id again with other start
    arguments is told apart from a retry of the same start (RunConflictError).
    Payloads are the codec's: JSON data, or live events (dumped as JSON where they can be;
    a value that cannot be is described by its ``repr``).
    """
    items = [[d.step, _canonical(d.event)] for d in deliveries]
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(payload: Any) -> Any:
    if not isinstance(payload, BaseModel):
        return payload
    try:
        data: Any = payload.model_dump(mode="json")
    except Exception:  # a live event may hold objects pydantic cannot dump as JSON
        data = repr(payload)
    return {"type": record_name(type(payload)), "value": data}
