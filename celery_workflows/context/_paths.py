"""Dotted paths into state (``ctx.store.get("a.b.0")``): one segment is a dict key, a
list index or an attribute. Upstream's public helpers of ``workflows.context.state_store``
under the same names and rules; ``state_store`` re-exports them.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydantic import BaseModel

from ..events import DictLikeModel

#: The most segments a path may have.
MAX_DEPTH = 1000

M = TypeVar("M", bound=BaseModel)


def is_declared_model_path_segment(obj: DictLikeModel, segment: str) -> bool:
    """Whether ``segment`` names something the model class declares (a field, a computed
    field, a property) rather than a dynamic key."""
    cls = type(obj)
    return (
        segment in cls.model_fields
        or segment in cls.model_computed_fields
        or isinstance(getattr(cls, segment, None), property)
    )


def traverse_path_step(obj: Any, segment: str) -> Any:
    """The value one segment into ``obj`` (KeyError, IndexError or AttributeError if none).

    A dict-like model's dynamic keys come first: a key named ``items`` or ``get`` is the
    stored value, never the mapping method of that name.
    """
    if isinstance(obj, dict):
        return obj[segment]
    if isinstance(obj, DictLikeModel):
        if segment in obj:
            return obj[segment]
        if is_declared_model_path_segment(obj, segment):
            return getattr(obj, segment)
        raise KeyError(segment)
    try:
        return obj[int(segment)]
    except (ValueError, TypeError, IndexError):
        pass
    return getattr(obj, segment)


def assign_path_step(obj: Any, segment: str, value: Any) -> None:
    """Set one segment of ``obj`` (a dict key, a dict-like model key, a list index, or an
    attribute)."""
    if isinstance(obj, dict):
        obj[segment] = value
        return
    if isinstance(obj, DictLikeModel):
        # Declared fields are set as fields, anything else is a dynamic key (a numeric
        # segment stays a string key, as reads look it up).
        setattr(obj, segment, value)
        return
    try:
        obj[int(segment)] = value
        return
    except (ValueError, TypeError, IndexError):
        pass
    setattr(obj, segment, value)


def _segments(path: str) -> list[str]:
    if not path:
        raise ValueError("Path cannot be empty")
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    return segments


def get_by_path(state: Any, path: str, default: Any = Ellipsis) -> Any:
    """The value at dotted ``path`` (the empty path: ``state`` itself); ValueError when a
    segment is missing, unless a ``default`` is given."""
    segments = path.split(".") if path else []
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    value = state
    try:
        for segment in segments:
            value = traverse_path_step(value, segment)
    except Exception:
        if default is not Ellipsis:
            return default
        raise ValueError(f"Path '{path}' not found in state") from None
    return value


def set_by_path(state: Any, path: str, value: Any) -> None:
    """Write ``value`` at dotted ``path`` in place, creating missing levels as dicts."""
    segments = _segments(path)
    current = state
    for segment in segments[:-1]:
        try:
            current = traverse_path_step(current, segment)
        except (KeyError, AttributeError, IndexError, TypeError):
            fresh: dict[str, Any] = {}
            assign_path_step(current, segment, fresh)
            current = fresh
    assign_path_step(current, segments[-1], value)


def _shallow(obj: Any) -> Any:
    """A shallow copy of a container on a write path (None: not a copyable container)."""
    if isinstance(obj, BaseModel):
        copied: Any = obj.model_copy()
        if isinstance(copied, DictLikeModel):
            # model_copy shares the dynamic keys' dict: a write would reach the original.
            copied._data = dict(copied._data)
        return copied
    if isinstance(obj, dict | list):
        return copy.copy(obj)
    return None


def set_by_path_copy(state: M, path: str, value: Any) -> M:
    """A copy of ``state`` with ``value`` at ``path``, ``state`` left alone: the containers
    on the path are copied, everything else is shared (a reader of the committed state
    never sees the write). A container that cannot be copied that way falls back to a
    deep copy of the whole state."""
    segments = _segments(path)
    root = _shallow(state)
    current = root
    try:
        for segment in segments[:-1]:
            try:
                child = _shallow(traverse_path_step(current, segment))
            except (KeyError, AttributeError, IndexError, TypeError):
                child = {}
            if child is None:
                raise TypeError(segment)
            assign_path_step(current, segment, child)
            current = child
    except Exception:
        root = copy.deepcopy(state)
        set_by_path(root, path, value)
        return root
    assign_path_step(current, segments[-1], value)
    return root  # type: ignore[no-any-return]


__all__ = [
    "MAX_DEPTH",
    "assign_path_step",
    "get_by_path",
    "is_declared_model_path_segment",
    "set_by_path",
    "set_by_path_copy",
    "traverse_path_step",
]
