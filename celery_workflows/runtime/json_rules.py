"""What a JSON run store cannot keep, found on the live value with the path that holds it.

pydantic's JSON dump turns NaN and infinity in untyped fields into ``null`` without a
word, and PostgreSQL cannot store the NUL character (``"\\x00"``) in JSON, so both are
looked for before the value is dumped, where a path still names the event's own fields
(``numbers['a'][1]``) rather than the wire shape around them. Only runtimes over a JSON
store apply these rules: the in-memory store keeps live objects, which lose nothing.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from ..events import DictLikeModel

__all__ = ["NUL_REASON", "find_unstorable"]

#: Why a NUL character is refused (the SQL store says the same).
NUL_REASON = (
    "contains a NUL character ('\\x00'), which a JSON run store does not keep "
    "(PostgreSQL cannot store it); remove it, or encode binary data (e.g. base64)"
)
_NON_FINITE = "cannot be stored: JSON has no NaN or infinity; use None or a string instead"
#: Deeper than this the walk stops (a cyclic structure ends here, and the dump fails).
_MAX_DEPTH = 100


def find_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The first ``(path, reason)`` of a NaN, an infinity or a NUL in ``value``, or None.

    Model fields and an event's extra fields are joined with ``.`` (a bare name at the
    root, ``path=""``); dict keys and list indexes are subscripts.
    """
    return _walk(value, path, 0)


def _walk(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value!r} {_NON_FINITE}")
    if isinstance(value, str):
        return (path, NUL_REASON) if "\x00" in value else None
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, BaseModel):
        return _walk_items(_model_items(value), path, depth, attribute=True)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and "\x00" in key:
                return path, f"key {key!r} {NUL_REASON}"
        return _walk_items(value.items(), path, depth, attribute=False)
    if isinstance(value, list | tuple | set | frozenset):
        return _walk_items(enumerate(value), path, depth, attribute=False)
    return None


def _walk_items(items: Any, path: str, depth: int, *, attribute: bool) -> tuple[str, str] | None:
    for key, item in items:
        found = _walk(item, _inner_path(path, key, attribute=attribute), depth + 1)
        if found is not None:
            return found
    return None


def _inner_path(path: str, key: Any, *, attribute: bool) -> str:
    if not attribute:
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else str(key)


def _model_items(model: BaseModel) -> list[tuple[str, Any]]:
    """Declared fields, then extra fields (an event keeps its extras in ``_data``)."""
    items = [(name, getattr(model, name, None)) for name in type(model).model_fields]
    if isinstance(model, DictLikeModel):
        items.extend(model.items())
    elif model.__pydantic_extra__:
        items.extend(model.__pydantic_extra__.items())
    return items
