"""JSON encoding of payloads: once, at the call that hands them over, with clear errors.

A payload is encoded when the caller gives it to the store (``set_state``, ...), not at
commit, so a bad value fails at the line that wrote it and names the key path. The
encoded text is marked as :class:`EncodedJson`; the engine's JSON serializer passes such
text through instead of encoding it a second time.
"""

from __future__ import annotations

import json
import math
from typing import Any

from celery_workflows.errors import StateValidationError

__all__ = ["EncodedJson", "check_state_size", "encode", "engine_json_serializer"]

#: How ``json.dumps`` (ASCII output) writes a NUL character.
_NUL_ESCAPE = "\\u0000"
#: Why a NUL character is refused: the same answer on SQLite, which could keep it, as on
#: PostgreSQL, which cannot (JSONB refuses it), so a run moves between them.
_NUL_REASON = (
    "contains a NUL character ('\\x00'), which a JSON run store does not keep "
    "(PostgreSQL cannot store it); remove it, or encode binary data (e.g. base64)"
)


class EncodedJson(str):
    """JSON text already produced by :func:`encode`."""

    __slots__ = ()


def engine_json_serializer(value: Any) -> str:
    """The ``json_serializer`` of the store's engines (pre-encoded text passes through)."""
    if isinstance(value, EncodedJson):
        return str(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def encode(value: Any, label: str, run_id: str) -> EncodedJson:
    """Encode ``value`` as JSON, or raise StateValidationError naming the bad key path.

    ``label`` names the field (``state``, ``meta``, ``deliveries[0].event``, ...).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refused(_find_problem(value, label, set()) or (label, str(exc)), run_id) from exc
    if _NUL_ESCAPE in text:
        # Or an escaped backslash before "u0000" in the text: the walk tells them apart.
        problem = _find_problem(value, label, set())
        if problem is not None:
            raise _refused(problem, run_id)
    return EncodedJson(text)


def check_state_size(encoded: str | None, limit: int | None, run_id: str) -> None:
    """Raise StateValidationError if the encoded state is over ``limit`` bytes.

    ``json.dumps`` writes ASCII, so characters are bytes.
    """
    if encoded is None or limit is None or len(encoded) <= limit:
        return
    raise StateValidationError(
        f"state is {len(encoded)} bytes as JSON, over the limit of {limit} bytes "
        f"(max_state_bytes) (run {run_id!r}; nothing was written, the stored state is "
        "unchanged; every edit reads and writes the whole state, so keep large data "
        "elsewhere, e.g. a file or object store, and put a reference in the state, or "
        "raise max_state_bytes)"
    )


def _refused(problem: tuple[str, str], run_id: str) -> StateValidationError:
    where, what = problem
    return StateValidationError(
        f"{where}: {what} (run {run_id!r}; nothing was written, the stored value is "
        "unchanged; store JSON-compatible values: dict, list, str, int, float, bool, None)"
    )


def _find_problem(value: Any, path: str, seen: set[int]) -> tuple[str, str] | None:
    """The first (path, reason) that keeps ``value`` from being JSON, depth first."""
    if isinstance(value, str):
        return (path, _NUL_REASON) if "\x00" in value else None
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value!r} is not allowed in JSON")
    if not isinstance(value, dict | list | tuple):
        return path, f"object of type {type(value).__name__} is not JSON serializable"
    if id(value) in seen:
        return path, "circular reference"
    seen.add(id(value))
    try:
        if isinstance(value, dict):
            return _find_in_dict(value, path, seen)
        for index, item in enumerate(value):
            found = _find_problem(item, f"{path}[{index}]", seen)
            if found:
                return found
        return None
    finally:
        seen.discard(id(value))


def _find_in_dict(value: dict[Any, Any], path: str, seen: set[int]) -> tuple[str, str] | None:
    for key, item in value.items():
        if not (key is None or isinstance(key, str | int | float | bool)):
            return path, f"key {key!r} of type {type(key).__name__} is not allowed in JSON"
        if isinstance(key, str) and "\x00" in key:
            return path, f"key {key!r} {_NUL_REASON}"
        found = _find_problem(item, f"{path}[{key!r}]", seen)
        if found:
            return found
    return None
