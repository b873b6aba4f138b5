"""Events: the messages steps take and return.

Same classes and behaviour as upstream ``workflows.events``: an event is a pydantic model
whose declared fields validate as usual and whose extra keyword arguments live in a
private dict reachable by attribute and by mapping access.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    model_serializer,
)

from . import errors
from ._serializers import (
    JsonSerializer,
    active_serializer,
    exception_class,
    qualified_name,
    register_defined_event,
    register_framework_exceptions,
    register_framework_types,
)

#: Resolves the package's own types and the events defined in this process, nothing else.
_FRAMEWORK_SERIALIZER = JsonSerializer()


class DictLikeModel(BaseModel):
    """A pydantic model that also stores undeclared fields, dict-style."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _data: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **params: Any) -> None:
        # Pydantic calls a custom __init__ from model_validate too, so the split of
        # declared fields, private attributes and extra data holds on every path.
        fields: dict[str, Any] = {}
        private: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in params.items():
            if key in type(self).model_fields:
                fields[key] = value
            elif key in self.__private_attributes__:
                private[key] = value
            else:
                extra[key] = value
        super().__init__(**fields)
        for key, value in private.items():
            super().__setattr__(key, value)
        if extra:
            self._data.update(extra)

    def __getattr__(self, name: str) -> Any:
        if name in self.__private_attributes__ or name in type(self).model_fields:
            return super().__getattr__(name)  # type: ignore[misc]
        try:
            return self.__pydantic_private__["_data"][name]  # type: ignore[index]
        except (KeyError, TypeError):
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__private_attributes__ or name in type(self).model_fields:
            super().__setattr__(name, value)
        else:
            self._data[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        """The extra field ``key``, or ``default``."""
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> KeysView[str]:
        """Names of the extra fields."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """Values of the extra fields."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """Extra fields as (name, value) pairs."""
        return self._data.items()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._data)

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The extra fields as a dict."""
        return self._data

    def __bool__(self) -> bool:
        # An empty event is still an event: `if ev:` must hold.
        return True

    @model_serializer(mode="wrap")
    def _dump_with_data(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self._data:
            data["_data"] = self._data
        return data


class Event(DictLikeModel):
    """Base class of every workflow event.

    Declared fields validate like any pydantic model; other keyword arguments are kept
    and read back as attributes or items: ``Event(a=1).a == Event(a=1)["a"] == 1``.
    """

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        register_defined_event(cls)


class StartEvent(Event):
    """The event a run starts with; ``workflow.run(**kwargs)`` builds it from kwargs."""


class StopEvent(Event):
    """The event that ends a run; ``result`` is what awaiting the handler returns.

    A subclass is returned as itself by the handler; the base class returns ``result``.
    """

    _result: Any = PrivateAttr(default=None)

    def __init__(self, result: Any = None, **kwargs: Any) -> None:
        super().__init__(_result=result, **kwargs)

    def _get_result(self) -> Any:
        return self._result

    @property
    def result(self) -> Any:
        """The run's result."""
        return self._get_result()

    @model_serializer(mode="wrap")
    def _dump_with_result(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self._result is not None:
            data["result"] = self._result
        return data

    def __repr__(self) -> str:
        items = {**self._data, **self.model_dump()}
        body = ", ".join(f"{k}={v!r}" for k, v in items.items())
        return f"{type(self).__name__}({body})"

    def __str__(self) -> str:
        return str(self._result)


#: Longest exception message a record keeps: a failure must always be storable, whatever
#: its message (a step that raised with a whole document in it still fails cleanly).
MAX_ERROR_MESSAGE_CHARS = 4000


def truncated_message(message: str, limit: int = MAX_ERROR_MESSAGE_CHARS) -> str:
    """``message``, cut to ``limit`` characters with a note saying how much was dropped."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... [truncated {len(message) - limit} characters]"


def _dump_exception(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, UnreconstructedException) and exc.original_type is not None:
        # Write the original record again, so a stand-in that crosses another boundary
        # still names the type it stands for (and its message is not wrapped twice).
        name, message = exc.original_type, exc.original_message
    else:
        name, message = qualified_name(type(exc)), str(exc)
    # A NUL cannot be stored by PostgreSQL: escaped, the failure stays storable.
    message = truncated_message(message).replace("\x00", "\\x00")
    return {"exception_type": name, "exception_message": message}


class UnreconstructedException(Exception):
    """Stands in for an exception whose class was not rebuilt after serialization.

    A record names the class of a failure; only builtin exceptions, the package's errors
    and classes registered on the serializer are rebuilt, because a name read from data is
    never imported. Any other name (or a class that refuses ``cls(message)``) gives this
    stand-in: ``original_type`` and ``original_message`` keep what the record said, and
    ``str()`` is the original message, as upstream's stand-in gives it.
    """

    def __init__(self, message: str, *, original_type: str | None = None) -> None:
        super().__init__(message)
        self.original_type = original_type
        self.original_message = message

    def __repr__(self) -> str:
        return (
            f"UnreconstructedException(original_type={self.original_type!r}, "
            f"{self.original_message!r})"
        )


def _load_exception(data: Any, *, serializer: JsonSerializer | None = None) -> BaseException:
    """Rebuild a recorded exception from known classes only, else a described stand-in."""
    if isinstance(data, BaseException):
        return data
    name = str(data["exception_type"])
    message = str(data["exception_message"])
    cls = exception_class(name, serializer)
    if cls is not None:
        try:
            return cls(message)
        except Exception:  # a class that refuses cls(message) leaves the stand-in below
            pass
    return UnreconstructedException(message, original_type=name)


def _dump_event(event: Event) -> Any:
    return _FRAMEWORK_SERIALIZER.serialize_value(event)


def _load_event(data: Any) -> Event:
    if isinstance(data, Event):
        return data
    event = (active_serializer() or _FRAMEWORK_SERIALIZER).deserialize_value(data)
    if not isinstance(event, Event):
        name = data.get("qualified_name") if isinstance(data, dict) else None
        raise ValueError(f"expected a serialized Event of a registered type, got {name!r}")
    return event


SerializableException = Annotated[
    BaseException,
    PlainSerializer(_dump_exception, return_type=dict[str, Any]),
    PlainValidator(_load_exception),
]
SerializableEvent = Annotated[
    Event, PlainSerializer(_dump_event, return_type=Any), PlainValidator(_load_event)
]


class WorkflowTimedOutEvent(StopEvent):
    """Streamed when a run exceeds its timeout, before WorkflowTimeoutError is raised."""

    timeout: float
    active_steps: list[str]


class WorkflowCancelledEvent(StopEvent):
    """Streamed when a run is cancelled, before WorkflowCancelledByUser is raised."""


class WorkflowFailedEvent(StopEvent):
    """Streamed when a step fails for good (retries exhausted, no handler)."""

    step_name: str
    exception: SerializableException
    attempts: int | None = None
    elapsed_seconds: float | None = None


class StepFailedEvent(Event):
    """Given to a ``@catch_error`` handler when a step exhausted its retries."""

    step_name: str
    input_event: SerializableEvent
    exception: SerializableException
    attempts: int
    elapsed_seconds: float
    failed_at: datetime


class InputRequiredEvent(Event):
    """Asks the caller for input; returned from a step it goes to the stream."""


class HumanResponseEvent(Event):
    """The caller's answer to an InputRequiredEvent, sent with ``send_event``."""


class InternalDispatchEvent(Event):
    """Base of events that expose the runtime's own activity on the stream."""


class WorkflowIdleEvent(InternalDispatchEvent):
    """The run waits for outside input and has no step running."""


class UnhandledEvent(InternalDispatchEvent):
    """An event sent into the run was accepted by no step and no waiter."""

    event_type: str = Field(description="Class name of the unhandled event.")
    qualified_name: str = Field(description="Fully qualified name of the event type.")
    step_name: str | None = Field(default=None, description="Target step, if any.")
    idle: bool = Field(description="Whether the run is idle after processing.")


class StepState(Enum):
    """Whether a step of a run is queued, running or not running."""

    PREPARING = "preparing"
    RUNNING = "running"
    NOT_RUNNING = "not_running"


class StepStateChanged(InternalDispatchEvent):
    """A step of the run changed state (internal event, ``expose_internal=True``)."""

    name: str = Field(description="Name of the step")
    step_state: StepState = Field(description="State of the step")
    worker_id: str = Field(description="ID of the worker that the step is running on")
    input_event_name: str = Field(description="Name of the input event")
    output_event_name: str | None = Field(description="Name of the output event", default=None)


EventType = type[Event]

register_framework_types(
    Event,
    StartEvent,
    StopEvent,
    InputRequiredEvent,
    HumanResponseEvent,
    StepFailedEvent,
    WorkflowTimedOutEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    StepStateChanged,
    UnhandledEvent,
    WorkflowIdleEvent,
)

register_framework_exceptions("workflows.events", UnreconstructedException)
register_framework_exceptions(
    "workflows.errors",
    *(
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.CeleryWorkflowsError)
    ),
)

__all__ = [
    "DictLikeModel",
    "Event",
    "EventType",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "InternalDispatchEvent",
    "StartEvent",
    "StepFailedEvent",
    "StepState",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "UnreconstructedException",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
]
