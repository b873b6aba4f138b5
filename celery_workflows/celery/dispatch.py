"""Publishing deliveries as Celery task messages."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from ..runtime.engine import Dispatch
from ..store.base import utcnow

log = logging.getLogger("celery_workflows.celery")


def task_name(workflow_name: str, step: str) -> str:
    """The stable Celery task name of a step (routing, rate limits, Flower)."""
    return f"celery_workflows.step:{workflow_name}.{step}"


class CeleryDispatcher:
    """Sends one message per delivery: the task of its step, ``task_id`` = delivery id.

    The message carries only the delivery id; the event lives in the run store, so a
    lost message loses nothing (the sweeper publishes again) and a worker never decodes
    anything from the broker but an id. Its ``run_id`` keyword is for people: Flower and
    ``celery inspect active|reserved|scheduled`` show which run a task belongs to (the
    task body does not rely on it, and accepts a message without it).
    """

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, items: Sequence[Dispatch]) -> None:
        """Publish ``items`` (a delayed delivery gets a countdown)."""
        for item in items:
            countdown = None
            if item.not_before is not None:
                countdown = max(0.0, (item.not_before - utcnow()).total_seconds())
            self.app.send_task(
                task_name(item.workflow_name, item.step),
                args=[item.delivery_id],
                kwargs={"run_id": item.run_id},
                task_id=item.delivery_id,
                countdown=countdown,
                # Step tasks store no result (the run store holds it). Without this, an
                # app with a Redis result backend SUBSCRIBEs the publishing process to
                # every delivery's result channel: a round trip per message in a web
                # process, and subscriptions that nobody ever reads or drops.
                ignore_result=True,
            )
