"""The state store a step sees as ``ctx.store``.

:class:`StateStore` is a facade over a backend. Before a run starts the backend is a local
model; during and after a run it is the run's row in the run store, so every write is one
transaction under the row lock (see ``celery_workflows.runtime.state``). Reads return
committed state and never take the lock.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from .._serializers import BaseSerializer
from ..errors import StateValidationError
from ..events import DictLikeModel

MAX_DEPTH = 1000


class DictState(DictLikeModel):
    """The default, untyped state: a dict-like pydantic model (``state["k"]``, ``state.k``)."""


MODEL_T = TypeVar("MODEL_T", bound=BaseModel)


# --- dotted paths ------------------------------------------------------------------------


def _step_into(obj: Any, segment: str) -> Any:
    if isinstance(obj, dict):
        return obj[segment]
    if isinstance(obj, DictLikeModel):
        if segment in obj:
            return obj[segment]
        if segment in type(obj).model_fields:
            return getattr(obj, segment)
        raise KeyError(segment)
    if isinstance(obj, list | tuple):
        return obj[int(segment)]
    if isinstance(obj, BaseModel) and segment not in type(obj).model_fields:
        raise AttributeError(segment)
    return getattr(obj, segment)


def _assign(obj: Any, segment: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[segment] = value
    elif isinstance(obj, DictLikeModel):
        setattr(obj, segment, value)
    elif isinstance(obj, list):
        obj[int(segment)] = value
    else:
        setattr(obj, segment, value)


def get_by_path(state: Any, path: str, default: Any = Ellipsis) -> Any:
    """Read ``a.b.c`` from state; ValueError (or ``default``) when a segment is missing."""
    segments = path.split(".") if path else []
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    value = state
    try:
        for segment in segments:
            value = _step_into(value, segment)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError):
        if default is not Ellipsis:
            return default
        raise ValueError(f"Path '{path}' not found in state") from None
    return value


def set_by_path(state: Any, path: str, value: Any) -> None:
    """Write ``a.b.c`` into state, creating intermediate dicts as needed."""
    if not path:
        raise ValueError("Path cannot be empty")
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    current = state
    for segment in segments[:-1]:
        try:
            current = _step_into(current, segment)
        except (KeyError, IndexError, AttributeError, TypeError):
            fresh: dict[str, Any] = {}
            _assign(current, segment, fresh)
            current = fresh
    _assign(current, segments[-1], value)


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


def merge_state(current: BaseModel, incoming: BaseModel) -> BaseModel:
    """``set_state`` semantics: the incoming model replaces the current one."""
    if isinstance(current, DictState) and not isinstance(incoming, DictState):
        return incoming
    if not isinstance(incoming, type(current)) and not isinstance(current, type(incoming)):
        raise ValueError(
            f"State must be of type {type(current).__name__}, got {type(incoming).__name__}"
        )
    return incoming


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


def encode_state_payload(state: BaseModel, serializer: BaseSerializer) -> dict[str, Any]:
    """The ``state`` section of a snapshot."""
    if isinstance(state, DictState):
        data: dict[str, Any] = {}
        for key, value in state.items():
            try:
                data[key] = serializer.serialize(value)
            except Exception as exc:
                raise ValueError(f"Failed to serialize state value for key {key}: {exc}") from exc
        state_data: Any = {"_data": data}
    else:
        state_data = serializer.serialize(state)
    return {
        "store_type": "in_memory",
        "state_type": type(state).__name__,
        "state_module": type(state).__module__,
        "state_data": state_data,
    }


InMemoryStateStore = StateStore
