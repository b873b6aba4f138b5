"""Serializers for state values and events in context snapshots and durable runs.

The wire shape is upstream's: a pydantic model becomes
``{"__is_pydantic": true, "value": <model_dump(mode="json")>, "qualified_name": "<module.Class>"}``
and containers are walked recursively, so snapshots move between the two packages.

Data never makes a process import code (DESIGN invariant 10). A recorded class name
resolves only against classes this process already holds: those registered on the
serializer, the package's own event and record types, Event subclasses already defined
here, and for exceptions the builtin ones and the package's errors. A tagged dict whose
name resolves to none of them stays a plain dict, because it may be a user's dict that only
looks tagged; an exception of an unknown type degrades to a described stand-in.
"""

from __future__ import annotations

import base64
import builtins
import copy
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel

_framework_types: dict[str, type[Any]] = {}


def qualified_name(cls: type[Any]) -> str:
    """``module.Name`` of a class: the name records carry, as upstream writes them.

    (Nested and function-local classes are found through the serializer's registered
    types, which are registered under this name and under ``module.QualName``.)"""
    return f"{cls.__module__}.{cls.__name__}"


def _record_names(cls: type[Any]) -> tuple[str, str]:
    """Both names a record may carry for ``cls`` (``__name__`` and ``__qualname__``)."""
    return qualified_name(cls), f"{cls.__module__}.{cls.__qualname__}"


_framework_record_names: dict[type[Any], str] = {}
#: Every Event subclass defined (imported) in this process, by record name. Any serializer
#: may resolve these: the class is loaded already, so naming one imports nothing.
_defined_events: dict[str, type[Any]] = {}
#: Exceptions rebuilt by name: the builtin ones and the package's own errors. A table built
#: from code, so a recorded name is only ever a key here, never an attribute lookup.
_exception_types: dict[str, type[Exception]] = {
    f"builtins.{name}": obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, Exception)
}
#: The serializer whose registered types nested validators use (the exception and input
#: event of the failure events): DictLikeModel's __init__ drops pydantic's validation
#: context, so the serializer rides along in a context variable instead.
_active_serializer: ContextVar[JsonSerializer | None] = ContextVar(
    "celery_workflows_active_serializer", default=None
)


def register_defined_event(cls: type[Any]) -> None:
    """Called for each Event subclass as it is defined."""
    # The latest definition wins, as a module's latest binding of a name does.
    for name in _record_names(cls):
        _defined_events[name] = cls


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


def register_framework_exceptions(upstream_module: str, *classes: type[Exception]) -> None:
    """Register package-owned exceptions, under their names here and upstream's."""
    for cls in classes:
        for name in (*_record_names(cls), f"{upstream_module}.{cls.__qualname__}"):
            _exception_types[name] = cls


def active_serializer() -> JsonSerializer | None:
    """The serializer decoding the enclosing value, if any (see ``validation_context``)."""
    return _active_serializer.get()


def exception_class(name: str, serializer: JsonSerializer | None = None) -> type[Exception] | None:
    """The exception class a record names, or None when it names no known one.

    Known: builtin exceptions, the package's errors and exception classes registered on
    ``serializer`` (default: the active one). Nothing is imported.
    """
    found = _exception_types.get(name)
    if found is not None:
        return found
    serializer = serializer or _active_serializer.get()
    registered = serializer.registered(name) if serializer is not None else None
    if isinstance(registered, type) and issubclass(registered, Exception):
        return registered
    return None


def _import_class(name: str) -> type[Any]:
    """Import a class the program named in ``allowed_types`` (never a name from data)."""
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise ValueError(f"allowed_types entry {name!r} is not a dotted class name")
    found = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(found, type):
        raise ValueError(f"allowed_types entry {name!r} does not name a class")
    return found


class BaseSerializer(ABC):
    """Turns values into strings and back."""

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Run a block with this serializer selected for nested validation (no-op here)."""
        yield

    @abstractmethod
    def serialize(self, value: Any) -> str:
        """Encode ``value`` as a string."""

    @abstractmethod
    def deserialize(self, value: str) -> Any:
        """Decode a string made by :meth:`serialize`."""


class JsonSerializer(BaseSerializer):
    """JSON serializer that keeps pydantic models' classes (events, typed state).

    A recorded class name resolves only against classes this process holds: those in
    ``allowed_types`` (or added by :meth:`with_types`), the package's event and record
    types, and Event subclasses defined in this process. No name read from data is ever
    imported; a tagged dict whose name is unknown decodes as the plain dict it is.

    Args:
        allowed_types: extra classes that may be reconstructed: models kept in state,
            exception classes to rebuild after a failure. A dotted name (upstream's legacy
            form) is imported once, here, because the program wrote it; ``None`` and an
            empty collection add nothing.
    """

    def __init__(self, *, allowed_types: Iterable[type[Any] | str] | None = None) -> None:
        self._registered: dict[str, type[Any]] = {}
        for entry in allowed_types or ():
            cls = _import_class(entry) if isinstance(entry, str) else entry
            if not isinstance(cls, type):
                raise TypeError("allowed_types entries must be classes or dotted names")
            for name in _record_names(cls):
                claimed = self._registered.get(name)
                if claimed is not None and claimed is not cls:
                    raise ValueError(
                        f"Two classes claim the serialized name {name}: {claimed!r} and "
                        f"{cls!r}; a record cannot tell them apart."
                    )
                self._registered[name] = cls

    @property
    def registered_types(self) -> tuple[type[Any], ...]:
        """The classes registered on this serializer (not the package's own)."""
        return tuple(dict.fromkeys(self._registered.values()))

    def registered(self, name: str) -> type[Any] | None:
        """The class registered on this serializer under ``name``, if any."""
        return self._registered.get(name)

    def with_types(self, *classes: type[Any]) -> JsonSerializer:
        """A copy (of the same class) that also resolves ``classes``, local ones included.

        A name already registered keeps its class: the caller's registration wins."""
        clone = copy.copy(self)  # keeps the class (PickleSerializer stays one)
        clone._registered = dict(self._registered)
        for cls in classes:
            for name in _record_names(cls):
                clone._registered.setdefault(name, cls)
        return clone

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Make this serializer's registered types reach nested validators."""
        token = _active_serializer.set(self)
        try:
            yield
        finally:
            _active_serializer.reset(token)

    def lookup(self, name: str) -> type[Any] | None:
        """The class a recorded name resolves to, or None. Never imports."""
        return self._registered.get(name) or _framework_types.get(name) or _defined_events.get(name)

    def resolve_class(self, name: str) -> type[Any]:
        """Resolve a recorded class name to a class; ValueError when it is not registered."""
        found = self.lookup(name)
        if found is None:
            raise ValueError(
                f"Class {name} is not registered: register it on the workflow (as a step's "
                "event or state type) or pass it in JsonSerializer(allowed_types=[...]). "
                "Class names read from data are never imported."
            )
        return found

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

    def tagged_class(self, data: dict[str, Any]) -> type[Any] | None:
        """The registered class a tagged dict names, or None (untagged or unknown name)."""
        name = data.get("qualified_name")
        if not isinstance(name, str) or "value" not in data:
            return None
        if data.get("__is_pydantic"):
            cls = self.lookup(name)
            return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if data.get("__is_component"):
            cls = self.lookup(name)
            return cls if callable(getattr(cls, "from_dict", None)) else None
        return None

    def deserialize_value(self, data: Any) -> Any:
        """Inverse of :meth:`serialize_value`; an unknown tagged dict stays a dict."""
        if isinstance(data, list):
            return [self.deserialize_value(v) for v in data]
        if not isinstance(data, dict):
            return data
        cls = self.tagged_class(data)
        if cls is None:
            return {k: self.deserialize_value(v) for k, v in data.items()}
        with self.validation_context():
            if data.get("__is_pydantic"):
                return cls.model_validate(data["value"])
            return cls.from_dict(data["value"])

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

    Unpickling imports whatever the pickle names, so give it only data this program wrote.
    Never used for broker messages or run stores: a worker refuses to unpickle anything it
    receives, and stored payloads are decoded with the JSON methods alone.
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
