"""The instrumentation a step runs under, as upstream's (``llama-index-instrumentation``).

A step's body sees these instrument tags (and every span it opens carries them):
the caller's tags at ``run()`` (kept with the run, so they cross to Celery workers),
``run_id`` and ``llamaindex.run_id``, and ``llamaindex.step.input_event`` /
``llamaindex.step.input_summary`` naming its input. A step stopped by a cancelled run
dispatches a :class:`SpanCancelledEvent` and leaves its span as an exit.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.dispatcher import active_instrument_tags

from ..events import Event, StopEvent

if TYPE_CHECKING:
    from ..store.base import RunStore

#: The run meta key holding the caller's instrument tags at ``run()``.
TAGS_META_KEY = "instrument_tags"
#: The delivery ``extra`` key saying its run keeps caller tags: a step reads them (one
#: read per run and process) only then, so a run without tags costs no read.
TAGGED = "tagged"


def tagged(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a new delivery's ``extra`` gets from its run's ``meta``: the mark that the
    run keeps caller tags, if it does."""
    return {TAGGED: True} if meta.get(TAGS_META_KEY) else {}


_SUMMARY_LENGTH = 200
_VALUE_LENGTH = 50
_CACHED_RUNS = 1024


class SpanCancelledEvent(BaseEvent):
    """Dispatched when a running step is stopped because its run was cancelled."""

    reason: str

    @classmethod
    def class_name(cls) -> str:
        """The event's name, as upstream's."""
        return "SpanCancelledEvent"


def caller_tags() -> dict[str, Any]:
    """The caller's instrument tags that can be kept with a run (JSON values only)."""
    kept: dict[str, Any] = {}
    for key, value in active_instrument_tags.get().items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # a value that cannot be stored stays in the caller's process
        kept[key] = value
    return kept


class RunTags:
    """The caller's tags of each run, read once per process from the run's meta."""

    def __init__(self) -> None:
        self._tags: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def of(self, store: RunStore, run_id: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The tags ``run()`` was called with for ``run_id`` (they never change), for a
        delivery with ``extra`` (none unless it is marked :data:`TAGGED`)."""
        if not extra.get(TAGGED):
            return {}
        found = self._tags.get(run_id)
        if found is None:
            meta = (await store.get_run(run_id)).meta
            stored = meta.get(TAGS_META_KEY)
            found = dict(stored) if isinstance(stored, dict) else {}
            self._tags[run_id] = found
            while len(self._tags) > _CACHED_RUNS:
                self._tags.popitem(last=False)
        else:
            self._tags.move_to_end(run_id)
        return found


run_tags = RunTags()


def step_tags(run_id: str, event: Event, caller: dict[str, Any]) -> dict[str, Any]:
    """The instrument tags of one step invocation."""
    return {
        **caller,
        **active_instrument_tags.get(),
        "run_id": run_id,
        "llamaindex.run_id": run_id,
        "llamaindex.step.input_event": type(event).__name__,
        "llamaindex.step.input_summary": summarize_event(event),
    }


def summarize_event(event: Event) -> str:
    """A short one-line description: ``Name(field=value, ...)``, at most 200 characters."""
    try:
        fields: list[tuple[str, Any]] = []
        if isinstance(event, StopEvent) and event._result is not None:
            fields.append(("result", event._result))
        fields.extend((name, getattr(event, name, None)) for name in type(event).model_fields)
        fields.extend(event._data.items())
        inner = ", ".join(f"{name}={_summarize_value(value)}" for name, value in fields)
        text = f"{type(event).__name__}({inner})"
    except Exception:
        return type(event).__name__
    if len(text) > _SUMMARY_LENGTH:
        text = text[: _SUMMARY_LENGTH - 3] + "..."
    return text


def _summarize_value(value: Any) -> str:
    if isinstance(value, str) and len(value) > _VALUE_LENGTH:
        return repr(value[:_VALUE_LENGTH] + "...")
    if isinstance(value, list) and len(value) > 3:
        return f"[{len(value)} items]"
    if isinstance(value, dict) and len(value) > 3:
        return f"{{{len(value)} keys}}"
    return repr(value)
