"""Change feeds of the stream hub: when to read the followed streams again.

:class:`NotifyFeed` wakes the hub when a followed run commits (through the run store's
notifier: PostgreSQL LISTEN/NOTIFY, one listener connection per process), with a slow
safety tick; :func:`default_feed` picks it for a store whose notifier pushes every
process's commits and :class:`~.hub.PollingFeed` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

from ..store.base import RunStore
from ..store.changes import ChangeNotifier, RunWatch
from .hub import ChangeFeed, PollingFeed

__all__ = ["NotifyFeed", "default_feed"]


class NotifyFeed:
    """Says "changed" when a followed run commits, and every ``safety`` seconds anyway.

    Its watches persist between waits (one shared event for all the followed runs), so a
    commit made while the hub reads is not missed: the next wait returns at once.
    """

    def __init__(self, notifier: ChangeNotifier, safety: float = 1.0) -> None:
        self.notifier = notifier
        self.safety = safety
        self._event: asyncio.Event | None = None
        self._watches: dict[str, RunWatch] = {}

    @property
    def following(self) -> int:
        """Runs subscribed to right now."""
        return len(self._watches)

    async def wait(self, run_ids: Collection[str]) -> None:
        """Return when any of ``run_ids`` committed since the last wait, or after
        ``safety`` seconds."""
        if self._event is None:
            self._event = asyncio.Event()
        wanted = set(run_ids)
        for run_id in set(self._watches) - wanted:
            self._watches.pop(run_id).close()
        for run_id in wanted - set(self._watches):
            self._watches[run_id] = self.notifier.subscribe(run_id, event=self._event)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), self.safety)
        self._event.clear()

    def stop(self) -> None:
        """The hub's reader ended: stop listening for every run."""
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch.close()


def default_feed(store: RunStore) -> ChangeFeed:
    """:class:`NotifyFeed` when ``store`` pushes every process's commits, else polling."""
    notifier = store.watch()
    if notifier.pushes:
        return NotifyFeed(notifier)
    return PollingFeed()
