"""A step's last ``edit_state`` commits with the step's completion when nothing runs between.

An ``edit_state`` block is one locked transaction. Committing it at the block's exit costs
a round trip and a disk flush; when the step then returns without awaiting anything else
(the common ``edit, then return the next event``), the completion opens a second locked
transaction right after. Instead, the edit's transaction stays open (holding the run lock)
until the step's next await, where a task commits it, or, if the step ends first, the
completion adopts it and commits both in one transaction: one commit per hop instead of
two (docs/architecture.md, "An edit committed with its step's end").

The edit stays exactly-once: it and its journal mark commit or vanish together, with the
completion or without it. Reads of the state by the step itself settle the commit first.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic import BaseModel

__all__ = ["DeferredCommit", "HeldTxn", "MergeRefused"]


class MergeRefused(Exception):
    """The completion adopted an edit's transaction and then could not store what the step
    left: both were rolled back, and the step must run again without the merge."""


class HeldTxn:
    """An open locked transaction (``store.locked()``, entered) whose exit was put off."""

    def __init__(self, cm: AbstractAsyncContextManager[Any], txn: Any) -> None:
        self._cm = cm
        self.txn = txn
        self.closed = False

    async def commit(self) -> None:
        """Leave the ``locked()`` block normally: it commits."""
        self.closed = True
        await self._cm.__aexit__(None, None, None)

    async def abort(self, exc: BaseException) -> None:
        """Leave the ``locked()`` block with ``exc``: it rolls back (``exc`` not raised)."""
        self.closed = True
        await self._cm.__aexit__(type(exc), exc, exc.__traceback__)


class DeferredCommit:
    """The edit of one step invocation whose commit waits for the step's next await."""

    def __init__(self, pending_writes: list[asyncio.Task[Any]]) -> None:
        self._pending_writes = pending_writes
        self._loop = asyncio.get_running_loop()
        self._held: HeldTxn | None = None
        self._state: BaseModel | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        """True on the invocation's own loop (a sync step's thread commits at once)."""
        try:
            return asyncio.get_running_loop() is self._loop and self._held is None
        except RuntimeError:
            return False

    @property
    def pending_state(self) -> BaseModel | None:
        """The state the held edit leaves, while its commit is put off."""
        return self._state if self._held is not None else None

    def hold(self, held: HeldTxn, state: BaseModel) -> None:
        """Put off ``held``'s commit to the step's next await (or its end)."""
        self._held, self._state = held, state
        self._task = asyncio.ensure_future(self._commit())
        self._pending_writes.append(self._task)

    async def settle(self) -> None:
        """Commit the held edit now (before the step reads the state itself)."""
        if self._task is not None:
            await self._task

    def take(self) -> HeldTxn | None:
        """The held edit's open transaction, for the completion, if its commit has not
        started (the step ended without awaiting since the edit)."""
        held, task = self._held, self._task
        if held is None or task is None:
            return None
        task.cancel()  # not started: it never runs
        self._pending_writes.remove(task)
        self._held = self._task = self._state = None
        return held

    async def _commit(self) -> None:
        held, self._held, self._state = self._held, None, None
        self._task = None
        if held is not None:
            await held.commit()
