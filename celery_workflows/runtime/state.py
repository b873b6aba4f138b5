"""The state backend of a started run: every write is one locked store transaction.

Inside a step the writes carry the delivery's fence (a superseded attempt is refused) and
an edit index in the delivery's journal: an edit whose journal mark already exists runs
on a scratch copy and is thrown away (DESIGN invariant 8).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..context.state_store import StateEdit, validate_state
from ..errors import StateValidationError
from ..store.base import DeliveryRecord, Fence, RunStore
from .codec import Codec
from .deferral import DeferredCommit, HeldTxn

#: The key in a delivery's ``extra`` of the retry generation its ``journal_id`` is for.
JOURNAL_GENERATION = "journal_gen"


def invocation_journal(delivery: DeliveryRecord) -> str:
    """The journal of the invocation ``delivery`` runs: its state edits, collect answers,
    sent events and stream writes are marked there, so a re-run after a crash (or a
    ``collect_events`` answer, or a ``wait_for_event`` resume) finds them done.

    A retry under a retry policy is a new invocation, as upstream runs the step again:
    its edits and sends take effect again, so each retry generation has its own journal.
    """
    retries = int((delivery.extra.get("retry") or {}).get("count", 0))
    if retries == int(delivery.extra.get(JOURNAL_GENERATION, 0)):
        return delivery.journal_id
    return f"{delivery.journal_id}/r{retries}"


def collect_journal_id(journal_id: str) -> str:
    """Where an invocation's ``collect_events`` answers are journaled (apart from its
    state edits, which are journaled under ``journal_id`` itself)."""
    return f"{journal_id}/collect"


def send_journal_id(journal_id: str) -> str:
    """Where an invocation's ``ctx.send_event`` calls are journaled."""
    return f"{journal_id}/send"


@dataclass
class _Edit:
    state: BaseModel
    replayed: bool


class JournalCursor:
    """Hands out the edit indexes of one step invocation, in call order.

    ``fresh`` says no mark of this journal can exist yet: the first attempt of a delivery
    that keeps its own journal. Only attempts of that delivery write to its journal, and
    none came before attempt 1 (a later one fences this one out), so the lookup is skipped.
    """

    def __init__(self, journal_id: str, *, fresh: bool = False) -> None:
        self.journal_id = journal_id
        self.fresh = fresh
        self._next = 0

    def take(self) -> int:
        """The next edit index."""
        index = self._next
        self._next += 1
        return index


class RunStateBackend:
    """State of run ``run_id`` in ``store``; optionally fenced and journaled (in a step)."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        codec: Codec,
        state_type: type[BaseModel],
        *,
        fence: Fence | None = None,
        journal: JournalCursor | None = None,
        where: str = "",
        deferral: DeferredCommit | None = None,
    ) -> None:
        self._store = store
        self._deferral = deferral
        self._run_id = run_id
        self._codec = codec
        self.state_type = state_type
        self._fence = fence
        self._journal = journal
        self._where = where or f"run {run_id!r}"

    async def read(self) -> BaseModel:
        """Committed state, no lock (a step's own held edit is committed first)."""
        if self._deferral is not None:
            await self._deferral.settle()
        run = await self._store.get_run(self._run_id)
        return self._codec.decode_state(run.state, for_edit=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[StateEdit]:
        """One transaction under the run lock; commits the edit with its journal mark
        (in a step, maybe with the step's end: see :mod:`.deferral`)."""
        index = self._journal.take() if self._journal is not None else None
        locked = self._store.locked(self._run_id, self._fence)
        txn = await locked.__aenter__()
        try:
            edit = await self._edit(txn, index)
            yield edit
            if not edit.replayed:
                self._stage(txn, edit, index)
        except BaseException as exc:
            if not await locked.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            return
        deferral = self._deferral
        if deferral is not None and not edit.replayed and deferral.usable:
            deferral.hold(HeldTxn(locked, txn), edit.state)
        else:
            await locked.__aexit__(None, None, None)

    async def _edit(self, txn: Any, index: int | None) -> _Edit:
        state = self._codec.decode_state(txn.run.state, for_edit=True)
        journal = self._journal
        # Committed by an earlier attempt: run the block on a scratch copy only.
        if (
            journal is not None
            and index is not None
            and not journal.fresh
            and await txn.journal_get(journal.journal_id, index) is not None
        ):
            return _Edit(state, replayed=True)
        return _Edit(state, replayed=False)

    def _stage(self, txn: Any, edit: _Edit, index: int | None) -> None:
        """Write the edited state and its journal mark into ``txn``."""
        # Live (in-memory) state is kept as upstream keeps it; state that is persisted
        # is validated before it is encoded, so a bad value never reaches the row.
        checked = (
            validate_state(edit.state, self._where) if self._codec.validates_state else edit.state
        )
        try:
            txn.set_state(self._codec.encode_state(checked))
        except StateValidationError as exc:
            # The codec and the store name the field; the step fails naming both.
            raise StateValidationError(f"{self._where}: {exc}") from exc
        if index is not None and self._journal is not None:
            txn.journal_put(self._journal.journal_id, index)
