"""The state store a step sees as ``ctx.store``.

:class:`StateStore` is a facade over a backend. Before a run starts the backend is a local
model; during and after a run it is the run's row in the run store, so every write is one
transaction under the row lock (see ``celery_workflows.runtime.state``). Reads return
committed state and never take the lock.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from .._serializers import BaseSerializer
from ..errors import StateValidationError
from ._dict_state import DictState
from ._paths import (
    MAX_DEPTH,
    assign_path_step,
    get_by_path,
    is_declared_model_path_segment,
    set_by_path,
    set_by_path_copy,
    traverse_path_step,
)
from ._state_codec import (
    KNOWN_UNSERIALIZABLE_KEYS,
    InMemorySerializedState,
    UnserializableKeyWarning,
    create_in_memory_payload,
    decode_seed_state,
    decode_state,
    deserialize_dict_state_data,
    deserialize_state_from_dict,
    encode_state,
    encode_state_payload,
    is_durable_serialized_state,
    parse_in_memory_state,
    register_state_type,
    serialize_dict_state_data,
)

if TYPE_CHECKING:
    from ..workflow import Workflow

MODEL_T = TypeVar("MODEL_T", bound=BaseModel)


# --- state values --------------------------------------------------------------------------


def default_state(state_type: type[BaseModel]) -> BaseModel:
    """A state model built from its defaults (every field must have one)."""
    try:
        return state_type()
    except ValidationError as exc:
        raise ValueError(f"State must have defaults for all fields: {exc}") from exc


def copy_for_edit(state: BaseModel) -> BaseModel:
    """An isolated copy for an edit block; handles that cannot be copied are shared."""
    try:
        return copy.deepcopy(state)
    except Exception:
        # Live handles (locks, clients) raise on deepcopy; share what cannot be copied.
        return state.model_copy(deep=False)


copy_state_for_edit = copy_for_edit


def validate_state(state: BaseModel, where: str) -> BaseModel:
    """Re-validate typed state before it is committed; DictState takes anything."""
    if isinstance(state, DictState):
        return state
    try:
        return type(state).model_validate(state.model_dump(warnings=False))
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise StateValidationError(
            f"{where}: state of type {type(state).__name__} failed validation on field(s) "
            f"{fields}: {exc}"
        ) from exc


def merge_state(current_state: BaseModel, incoming: BaseModel) -> BaseModel:
    """``set_state`` semantics (upstream's): a model of the current type (or a subclass)
    replaces the state; a model of a parent type overwrites the fields it has and keeps
    the rest; any other type is a ValueError."""
    current_type = type(current_state)
    if isinstance(incoming, current_type):
        return incoming
    if issubclass(current_type, type(incoming)):
        return current_type.model_validate({**current_state.model_dump(), **incoming.model_dump()})
    raise ValueError(
        f"State must be of type {current_type.__name__} or a parent type, "
        f"got {type(incoming).__name__}"
    )


def most_derived_state_type(types: Iterable[type[BaseModel]]) -> type[BaseModel]:
    """The state type of a workflow whose steps annotate ``Context[...]`` with ``types``:
    the one that derives from all the others (a subclass workflow extends its parent's
    state); DictState when there are none; ValueError when they are not one line."""
    found = list(dict.fromkeys(t for t in types if t is not DictState))
    for candidate in found:
        if all(issubclass(candidate, other) for other in found):
            return candidate
    if found:
        raise ValueError(
            "Multiple state types are not in a compatible inheritance hierarchy. All state "
            "types must share a common inheritance chain. Found: "
            + ", ".join(t.__name__ for t in found)
        )
    return DictState


def infer_state_type(workflow: Workflow) -> type[BaseModel]:
    """The state type of ``workflow``, from its steps' ``Context[...]`` annotations."""
    return workflow._state_type()


#: Upstream's names for :func:`default_state` and :func:`copy_for_edit`.
create_cleared_state = default_state


# --- backends --------------------------------------------------------------------------


class StateEdit(Protocol):
    """One open write transaction on the state."""

    state: BaseModel
    #: True when the journal shows this write already committed in an earlier attempt:
    #: the block then runs on a scratch copy whose changes are thrown away.
    replayed: bool


class StateBackend(Protocol):
    """Where a :class:`StateStore` reads and writes."""

    state_type: type[BaseModel]

    async def read(self) -> BaseModel:
        """Committed state (shared: callers copy before mutating)."""
        ...

    def write(self) -> AbstractAsyncContextManager[StateEdit]:
        """Open a write; on clean exit the edit's ``state`` is committed."""
        ...


class _LocalEdit:
    def __init__(self, state: BaseModel) -> None:
        self.state = state
        self.replayed = False


class LocalStateBackend:
    """State held in this process: a context before its first run starts."""

    def __init__(self, state: BaseModel) -> None:
        self._state = state
        self.state_type: type[BaseModel] = type(state)
        register_state_type(self.state_type)
        self._lock = asyncio.Lock()
        self.written = False

    @property
    def current(self) -> BaseModel:
        """The committed model (no copy)."""
        return self._state

    async def read(self) -> BaseModel:
        """The committed model."""
        return self._state

    @asynccontextmanager
    async def write(self) -> AsyncIterator[StateEdit]:
        """Edit a copy; commit it on clean exit."""
        async with self._lock:
            edit = _LocalEdit(copy_for_edit(self._state))
            yield edit
            self._state = edit.state
            self.written = True


# --- the facade ------------------------------------------------------------------------


class StateStore(Generic[MODEL_T]):
    """``ctx.store``: read and write the run's state.

    ``get``/``get_state`` read committed state without a lock. ``set``, ``set_state``,
    ``clear`` and ``edit_state()`` are each one write under the run's lock; calling one
    of them inside ``edit_state()`` raises RuntimeError (mutate the yielded state instead).
    """

    def __init__(self, backend: StateBackend) -> None:
        self._backend = backend
        self._holder: asyncio.Task[Any] | None = None

    @property
    def state_type(self) -> type[BaseModel]:
        """The state model class (DictState for untyped state)."""
        return self._backend.state_type

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[StateEdit]:
        task = asyncio.current_task()
        if self._holder is not None and self._holder is task:
            raise RuntimeError("writer called inside edit_state: mutate the yielded state instead")
        async with self._backend.write() as edit:
            self._holder = task
            try:
                yield edit
            finally:
                self._holder = None

    async def get_state(self) -> MODEL_T:
        """A copy of the committed state model."""
        state = await self._backend.read()
        return state.model_copy()  # type: ignore[return-value]

    async def set_state(self, state: MODEL_T) -> None:
        """Replace the state with ``state``."""
        async with self._write() as edit:
            if not edit.replayed:
                edit.state = merge_state(edit.state, state)

    async def get(self, path: str, default: Any = Ellipsis) -> Any:
        """Value at dotted ``path``; ValueError if missing and no ``default`` is given."""
        return get_by_path(await self._backend.read(), path, default)

    async def set(self, path: str, value: Any) -> None:
        """Write ``value`` at dotted ``path`` (intermediate dicts are created)."""
        async with self._write() as edit:
            if not edit.replayed:
                set_by_path(edit.state, path, value)

    async def clear(self) -> None:
        """Reset the state to its type's defaults."""
        async with self._write() as edit:
            if not edit.replayed:
                edit.state = default_state(type(edit.state))

    @asynccontextmanager
    async def edit_state(self) -> AsyncIterator[MODEL_T]:
        """Edit an isolated copy of the state, committed atomically on exit."""
        async with self._write() as edit:
            yield edit.state  # type: ignore[misc]

    def to_dict(self, serializer: Any) -> dict[str, Any]:
        """Upstream-shaped state payload of a local (not yet started) store."""
        backend = self._backend
        if not isinstance(backend, LocalStateBackend):
            raise NotImplementedError("use Context.to_dict() for a running or finished run")
        return encode_state_payload(backend.current, serializer)


class InMemoryStateStore(StateStore[MODEL_T]):
    """A state store over one model held in this process (upstream's class).

    ``InMemoryStateStore(MyState())`` or ``InMemoryStateStore(DictState())``; writes are
    serialized by a lock, each commits a new model, reads see the committed one.
    """

    def __init__(self, initial_state: MODEL_T) -> None:
        super().__init__(LocalStateBackend(initial_state))

    @classmethod
    def over(cls, backend: StateBackend) -> InMemoryStateStore[Any]:
        """The store over ``backend`` (a run's row, a step's journaled edits): ``ctx.store``
        is an ``InMemoryStateStore`` wherever the state lives, so upstream's
        ``isinstance(ctx.store, InMemoryStateStore)`` holds."""
        store: InMemoryStateStore[Any] = cls.__new__(cls)
        StateStore.__init__(store, backend)
        return store

    @classmethod
    def from_dict(
        cls, serialized_state: dict[str, Any], serializer: BaseSerializer
    ) -> InMemoryStateStore[Any]:
        """A store holding the state of a ``to_dict`` payload (empty: a DictState)."""
        if not serialized_state:
            return cls(DictState())  # type: ignore[arg-type]
        return cls(decode_seed_state(serialized_state, serializer))  # type: ignore[arg-type]


__all__ = [
    "KNOWN_UNSERIALIZABLE_KEYS",
    "MAX_DEPTH",
    "DictState",
    "InMemorySerializedState",
    "InMemoryStateStore",
    "LocalStateBackend",
    "StateBackend",
    "StateEdit",
    "StateStore",
    "UnserializableKeyWarning",
    "assign_path_step",
    "copy_for_edit",
    "copy_state_for_edit",
    "create_cleared_state",
    "create_in_memory_payload",
    "decode_seed_state",
    "decode_state",
    "default_state",
    "deserialize_dict_state_data",
    "deserialize_state_from_dict",
    "encode_state",
    "encode_state_payload",
    "get_by_path",
    "infer_state_type",
    "is_declared_model_path_segment",
    "is_durable_serialized_state",
    "merge_state",
    "most_derived_state_type",
    "parse_in_memory_state",
    "serialize_dict_state_data",
    "set_by_path",
    "set_by_path_copy",
    "traverse_path_step",
    "validate_state",
]
