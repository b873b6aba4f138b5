"""Serializers for state values and events in context snapshots and durable runs.

The wire shape is upstream's: a pydantic model becomes
``{"__is_pydantic": true, "value": <model_dump(mode="json")>, "qualified_name": "<module.Class>"}``
and containers are walked recursively, so snapshots move between the two packages.

Class names are resolved against registered types first. With ``allowed_types`` given,
nothing else resolves, so a payload can never make a process import a module it names;
the Celery runtime always builds its serializer that way from the workflow's event and
state types. ``JsonSerializer()`` with no ``allowed_types`` imports by name, like upstream,
for snapshots a user hands in on purpose.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

_framework_types: dict[str, type[Any]] = {}


def qualified_name(cls: type[Any]) -> str:
    """``module.Name`` of a class: the name records carry, as upstream writes them.

    (Nested and function-local classes are found through the serializer's registered
    types, which are registered under this name and under ``module.QualName``.)"""
    return f"{cls.__module__}.{cls.__name__}"


_framework_record_names: dict[type[Any], str] = {}
#: Every Event subclass defined (imported) in this process, by record name. A restricted
#: serializer may resolve these: naming one never imports anything.
_defined_events: dict[str, type[Any]] = {}


def register_defined_event(cls: type[Any]) -> None:
    """Called for each Event subclass as it is defined."""
    # The latest definition wins, as a module's latest binding of a name does.
    _defined_events[qualified_name(cls)] = cls
    _defined_events[f"{cls.__module__}.{cls.__qualname__}"] = cls


def record_name(cls: type[Any]) -> str:
    """The class name a record carries. The package's own events are written under
    upstream's names (``workflows.events.X``) so that snapshots load in either package."""
    return _framework_record_names.get(cls) or qualified_name(cls)


def register_framework_types(*classes: type[Any]) -> None:
    """Register package-owned classes that every serializer may resolve."""
    for cls in classes:
        _framework_types[qualified_name(cls)] = cls
        # Upstream snapshots name framework events under ``workflows.*``.
        _framework_types[f"workflows.events.{cls.__qualname__}"] = cls
        _framework_record_names[cls] = f"workflows.events.{cls.__qualname__}"


def import_qualified_name(name: str) -> Any:
    """Import ``package.module.Attr`` (the longest importable module prefix wins)."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        obj: Any = module
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise ValueError(f"cannot import {name!r}")


class BaseSerializer(ABC):
    """Turns values into strings and back."""

    @abstractmethod
    def serialize(self, value: Any) -> str:
        """Encode ``value`` as a string."""

    @abstractmethod
    def deserialize(self, value: str) -> Any:
        """Decode a string made by :meth:`serialize`."""


class JsonSerializer(BaseSerializer):
    """JSON serializer that keeps pydantic models' classes (events, typed state).

    Args:
        allowed_types: classes (or legacy dotted names) that may be reconstructed.
            ``None`` resolves any name by import; a collection resolves only those
            names and the package's own event types.
    """

    def __init__(self, *, allowed_types: Iterable[type[Any] | str] | None = None) -> None:
        self._registered: dict[str, type[Any]] = {}
        self._allowed_names: frozenset[str] | None = None
        if allowed_types is not None:
            names: set[str] = set()
            for entry in allowed_types:
                if isinstance(entry, str):
                    names.add(entry)
                    continue
                if not isinstance(entry, type):
                    raise TypeError("allowed_types entries must be classes or dotted names")
                for name in (qualified_name(entry), f"{entry.__module__}.{entry.__name__}"):
                    claimed = self._registered.get(name)
                    if claimed is not None and claimed is not entry:
                        raise ValueError(
                            f"Two classes claim the serialized name {name}: {claimed!r} and "
                            f"{entry!r}; a record cannot tell them apart."
                        )
                    self._registered[name] = entry
                    names.add(name)
            self._allowed_names = frozenset(names)

    @property
    def restricted(self) -> bool:
        """True when only registered classes resolve (no import by name)."""
        return self._allowed_names is not None

    def knowing(self, *classes: type[Any]) -> JsonSerializer:
        """A copy that resolves ``classes`` by name first (local classes included),
        keeping this serializer's restriction or lack of it."""
        if self._allowed_names is not None:
            return self.with_types(*classes)
        clone = copy.copy(self)  # keeps the class (PickleSerializer stays one)
        clone._registered = dict(self._registered)
        for cls in classes:
            clone._registered.setdefault(qualified_name(cls), cls)
            clone._registered.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
        return clone

    def with_types(self, *classes: type[Any]) -> JsonSerializer:
        """A serializer that also resolves ``classes`` (self when unrestricted)."""
        if self._allowed_names is None:
            return self
        legacy = self._allowed_names - self._registered.keys()
        return JsonSerializer(
            allowed_types=(*dict.fromkeys(self._registered.values()), *legacy, *classes)
        )

    def resolve_class(self, name: str) -> type[Any]:
        """Resolve a recorded class name to a class, refusing names not allowed."""
        found = self._registered.get(name) or _framework_types.get(name)
        if found is not None:
            return found
        if self._allowed_names is not None and name in _defined_events:
            # Events a step only streams (write_event_to_stream) are in no annotation;
            # the class is already loaded here, so resolving it imports nothing.
            return _defined_events[name]
        if self._allowed_names is not None and name not in self._allowed_names:
            raise ValueError(
                f"Class {name} is not in the serializer's allowed types; register it on the "
                "workflow (as a step's event or state type) or pass it in allowed_types."
            )
        cls = import_qualified_name(name)
        if not isinstance(cls, type):
            raise ValueError(f"{name} does not name a class")
        return cls

    def serialize_value(self, value: Any) -> Any:
        """Encode ``value`` into JSON-compatible data, tagging pydantic models."""
        if isinstance(value, BaseModel):
            return {
                "__is_pydantic": True,
                "value": value.model_dump(mode="json"),
                "qualified_name": record_name(type(value)),
            }
        if hasattr(value, "class_name") and hasattr(value, "to_dict"):
            return {
                "__is_component": True,
                "value": value.to_dict(),
                "qualified_name": qualified_name(type(value)),
            }
        if isinstance(value, dict):
            return {k: self.serialize_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.serialize_value(v) for v in value]
        return value

    def deserialize_value(self, data: Any) -> Any:
        """Inverse of :meth:`serialize_value`."""
        if isinstance(data, dict):
            name = data.get("qualified_name")
            if data.get("__is_pydantic") and name:
                return self.resolve_class(name).model_validate(data["value"])
            if data.get("__is_component") and name:
                return self.resolve_class(name).from_dict(data["value"])
            return {k: self.deserialize_value(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.deserialize_value(v) for v in data]
        return data

    def serialize(self, value: Any) -> str:
        """Encode ``value`` to a JSON string; ValueError if it is not encodable."""
        try:
            return json.dumps(self.serialize_value(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Failed to serialize value: {type(value)}: {value!s}") from exc

    def deserialize(self, value: str) -> Any:
        """Decode a JSON string made by :meth:`serialize`."""
        return self.deserialize_value(json.loads(value))


class PickleSerializer(JsonSerializer):
    """JSON first, pickle as a fallback. An explicit opt-in for trusted, in-process data.

    Never used for broker messages: a worker refuses to unpickle anything it receives.
    """

    def serialize(self, value: Any) -> str:
        """JSON when possible, else base64-encoded pickle."""
        try:
            return super().serialize(value)
        except ValueError:
            return base64.b64encode(pickle.dumps(value)).decode("ascii")

    def deserialize(self, value: str) -> Any:
        """Pickle when the string is a pickle, else JSON."""
        try:
            return pickle.loads(base64.b64decode(value, validate=True))
        except Exception:
            return super().deserialize(value)


JsonPickleSerializer = PickleSerializer
