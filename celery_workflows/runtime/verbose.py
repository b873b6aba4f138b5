"""``Workflow(verbose=True)``: a line per step start and completion, as upstream prints.

Lines go to the ``celery_workflows.verbose`` logger when it is configured for INFO (a
Celery worker's log), else to standard output.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..events import Event

if TYPE_CHECKING:
    from ..store.base import DeliveryRecord

verbose_log = logging.getLogger("celery_workflows.verbose")


def say(line: str) -> None:
    """Write one verbose line."""
    if verbose_log.isEnabledFor(logging.INFO):
        verbose_log.info(line)
    else:
        print(line)


def started(delivery: DeliveryRecord, event: Event) -> None:
    """``[step:attempt] started from <input event>``."""
    say(f"[{delivery.step}:{delivery.attempt}] started from {type(event).__name__}")


def finished(delivery: DeliveryRecord, result: Any, error: BaseException | None) -> None:
    """``[step:attempt] complete with <result>`` (or the error it failed with)."""
    prefix = f"[{delivery.step}:{delivery.attempt}]"
    if error is not None:
        say(f"{prefix} failed with {type(error).__name__}: {error}")
    elif result is None:
        say(f"{prefix} complete with no result")
    else:
        say(f"{prefix} complete with {type(result).__name__}")
