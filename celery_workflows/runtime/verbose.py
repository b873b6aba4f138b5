"""``Workflow(verbose=True)``: the lines upstream prints: an event entering the run
(``[tick] add: ...``), a step's start and completion (``[step:n] ...``, ``n`` counting
attempts from 0), and the run's result (``[result] ...``).

Lines go to the ``celery_workflows.verbose`` logger when it is configured for INFO (a
Celery worker's log), else to standard output.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..events import Event, StopEvent

if TYPE_CHECKING:
    from ..store.base import DeliveryRecord

verbose_log = logging.getLogger("celery_workflows.verbose")


def say(line: str) -> None:
    """Write one verbose line."""
    if verbose_log.isEnabledFor(logging.INFO):
        verbose_log.info(line)
    else:
        print(line)


def summary(event: Event, max_length: int = 200) -> str:
    """``Name(field=value, ...)``: an event in one short line (long values elided)."""
    parts = []
    if isinstance(event, StopEvent) and event.result is not None:
        parts.append(f"result={_short(event.result)}")
    for name in type(event).model_fields:
        parts.append(f"{name}={_short(getattr(event, name, None))}")
    parts += [f"{key}={_short(value)}" for key, value in event.items()]
    line = f"{type(event).__name__}({', '.join(parts)})"
    return line if len(line) <= max_length else line[: max_length - 3] + "..."


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) > 50:
        return repr(value[:50] + "...")
    if isinstance(value, list | dict) and len(value) > 3:
        return f"[{len(value)} items]" if isinstance(value, list) else f"{{{len(value)} keys}}"
    return repr(value)


def added(event: Event) -> None:
    """``[tick] add: <event>``: an event entered the run."""
    say(f"[tick] add: {summary(event)}")


def started(delivery: DeliveryRecord, event: Event) -> None:
    """``[step:n] started from <input event>``."""
    say(f"[{delivery.step}:{delivery.attempt - 1}] started from {type(event).__name__}")


def finished(delivery: DeliveryRecord, result: Any, error: BaseException | None) -> None:
    """``[step:n] complete with <result>`` (or the error it failed with), after the
    run's ``[result]`` line for a StopEvent; then the events it returned, as added."""
    prefix = f"[{delivery.step}:{delivery.attempt - 1}]"
    if error is not None:
        say(f"{prefix} failed with {type(error).__name__}: {error}")
        return
    if isinstance(result, StopEvent):
        say(f"[result] {summary(result)}")
    if result is None:
        say(f"{prefix} complete with no result")
    else:
        say(f"{prefix} complete with {type(result).__name__}")
    returned = result if isinstance(result, list | tuple) else [result]
    for event in returned:
        if isinstance(event, Event) and not isinstance(event, StopEvent):
            added(event)
