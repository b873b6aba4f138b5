"""Events and runs as llama-agents-server writes them on the wire.

Outgoing, an event is an envelope ``{"value", "qualified_name", "type", "types"}``; a run is
a handler record (``HandlerData``). Incoming, an event is resolved by its name against the
workflow's registered event types only: nothing named in a request is ever imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .._serializers import qualified_name, record_name
from ..events import Event, InternalDispatchEvent, StopEvent
from ..store.base import RunRecord

__all__ = [
    "EventParseError",
    "envelope",
    "event_registry",
    "handler_data",
    "parse_event",
    "type_chain",
    "unreadable_envelope",
    "wire_status",
]


class EventParseError(ValueError):
    """A request's event could not be resolved or validated (answered with a 400)."""


def type_chain(cls: type[Event]) -> list[str] | None:
    """Names of the Event subclasses ``cls`` derives from, nearest first (None if none)."""
    names: list[str] = []
    for base in cls.__mro__[1:]:
        if base is Event or not (isinstance(base, type) and issubclass(base, Event)):
            break
        names.append(base.__name__)
    return names or None


def envelope(event: Event) -> dict[str, Any]:
    """The envelope of ``event``. ``qualified_name`` of the package's own events is
    upstream's (``workflows.events.StopEvent``), as snapshots write it."""
    cls = type(event)
    return {
        "value": event.model_dump(mode="json"),
        "qualified_name": record_name(cls),
        "type": cls.__name__,
        "types": type_chain(cls),
    }


def unreadable_envelope(payload: Any) -> dict[str, Any]:
    """A stored event this process cannot rebuild (its type is not registered here):
    its stored fields, under the stored class name, so a stream goes on past it."""
    name = "UnreadableEvent"
    value: Any = payload
    if isinstance(payload, dict):
        name = str(payload.get("qualified_name") or name).rsplit(".", 1)[-1]
        value = payload.get("value", payload)
    return {
        "value": value if isinstance(value, dict) else {"value": value},
        "qualified_name": None,
        "type": name,
        "types": None,
    }


def is_internal(event: Event) -> bool:
    """Internal dispatch events are streamed only to clients that ask for them."""
    return isinstance(event, InternalDispatchEvent)


def is_terminal(event: Event) -> bool:
    """A stream ends with its first StopEvent (result, failure, timeout, cancel)."""
    return isinstance(event, StopEvent)


def event_registry(
    events: Iterable[type[Event]], additional: Iterable[type[Event]] = ()
) -> dict[str, type[Event]]:
    """Name -> type of the events a workflow accepts from clients (its own and the
    ``additional_events`` given at registration)."""
    return {cls.__name__: cls for cls in [*events, *additional]}


def _by_qualified_name(name: str, registry: Mapping[str, type[Event]]) -> type[Event] | None:
    # Only a registered class can match: the name is compared, never imported. Older
    # clients send upstream's module path, so the last component is tried as well.
    for cls in registry.values():
        if name in (record_name(cls), qualified_name(cls)):
            return cls
    return registry.get(name.rsplit(".", 1)[-1])


def parse_event(
    data: Any, registry: Mapping[str, type[Event]], explicit: type[Event] | None = None
) -> Event:
    """The event a client sent: an envelope ``{"type"|"qualified_name", "value"}`` (a JSON
    string of one too), or, with ``explicit``, the bare fields of that event type."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise EventParseError(f"event is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise EventParseError("an event must be a JSON object")
    if "value" not in data and "data" in data:  # the older field name
        data = {**data, "value": data["data"]}
    has_name = "type" in data or "qualified_name" in data
    if explicit is not None and "value" not in data and not has_name:
        return _validate(explicit, data)
    cls = _resolve(data, registry)
    return _validate(cls, data.get("value") or {})


def _resolve(data: Mapping[str, Any], registry: Mapping[str, type[Event]]) -> type[Event]:
    name = data.get("type")
    if isinstance(name, str) and name:
        found = registry.get(name)
        if found is None:
            known = ", ".join(registry) or "none"
            raise EventParseError(f"Invalid event type: {name}. Expected one of {known}")
        return found
    qualified = data.get("qualified_name")
    if isinstance(qualified, str) and qualified:
        cls = _by_qualified_name(qualified, registry)
        if cls is None:
            raise EventParseError(
                f"Event type {qualified} is not declared by this workflow. "
                "Register it with add_workflow(..., additional_events=[...])."
            )
        return cls
    raise EventParseError("an event needs a 'type' (or 'qualified_name') and a 'value'")


def _validate(cls: type[Event], value: Any) -> Event:
    if not isinstance(value, dict):
        raise EventParseError(f"the value of a {cls.__name__} must be a JSON object")
    fields = value.get("_data", value) if set(value) <= {"_data"} else value
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise EventParseError(f"Failed to deserialize event: {exc}") from exc


def wire_status(run: RunRecord) -> str:
    """The protocol's status: a run waiting for a human is still ``running``."""
    return "running" if run.status == "waiting" else run.status


def _error_text(run: RunRecord, timeout: float | None) -> str | None:
    if run.status != "failed" or not run.error:
        return None
    if run.error.get("kind") == "timeout" and timeout is not None:
        return f"Workflow timed out after {timeout}s"  # upstream's words
    # A step's failure keeps its exception's message (upstream's ``str(exception)``);
    # a timeout or a poisoned delivery, the engine's message.
    message = run.error.get("exception_message") or run.error.get("message")
    return str(message) if message else "the run failed"


def handler_data(
    run: RunRecord, name: str, result: dict[str, Any] | None, timeout: float | None = None
) -> dict[str, Any]:
    """The handler record of ``run`` served under workflow ``name`` (its run id is its
    handler id: any server process finds it in the run store); ``timeout`` is the
    workflow's, named by the error of a run that timed out."""
    return {
        "handler_id": run.run_id,
        "workflow_name": name,
        "run_id": run.run_id,
        "error": _error_text(run, timeout),
        "result": result,
        "result_unreadable": False,
        "status": wire_status(run),
        "started_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "completed_at": run.updated_at.isoformat() if run.finished else None,
    }
