"""Reads a step function's signature into a frozen :class:`StepSpec`.

Annotations are resolved once, at decoration time, against the function's globals and
the locals of the scopes around the decorator (so events defined in a test function or
a class body resolve, with or without ``from __future__ import annotations``).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import BaseModel

from .collect import All, Collect, Take
from .errors import WorkflowValidationError
from .events import Event, StepFailedEvent
from .resource import ResourceDefinition

StepRole = Literal["step", "catch_error"]


@dataclass(frozen=True)
class StepSpec:
    """What the runtime needs to know about one step, read once from its signature."""

    name: str
    accepted_events: tuple[type[Event], ...]
    event_params: tuple[tuple[str, tuple[type[Event], ...]], ...]
    return_types: tuple[Any, ...]
    context_parameter: str | None
    context_state_type: type[BaseModel] | None
    resource_params: tuple[tuple[str, Any], ...]
    is_async: bool
    num_workers: int = 4
    retry_policy: Any = None
    accept_event_subclasses: bool = False
    is_fan_out: bool = False
    #: The name of the ``list[E]`` parameter (a collecting step).
    collection_name: str | None = None
    #: How the ``list[E]`` parameter is released (``Collect()``: all, at settling).
    collection_policy: Collect | None = None
    #: Event types the step may return bare (declared outside its ``list[...]``).
    single_returns: tuple[type[Event], ...] = ()
    role: StepRole = "step"
    catch_error_for_steps: tuple[str, ...] | None = None
    #: Graph checks this step is exempt from (``"reachability"``, ``"dead_end"``).
    skip_graph_checks: tuple[str, ...] = ()
    catch_error_max_recoveries: int = 1
    output_events: tuple[type[Event], ...] = field(default=())
    #: ``T`` of each resource parameter's ``Annotated[T, descriptor]``, by name.
    resource_types: tuple[tuple[str, Any], ...] = ()

    @property
    def collection_param(self) -> tuple[str, tuple[type[Event], ...]] | None:
        """Upstream's step-config fact: ``(parameter name, member types)`` of the
        ``list[E]`` parameter, else None."""
        if self.collection_name is None:
            return None
        return self.collection_name, dict(self.event_params)[self.collection_name]

    @property
    def bare_return_types(self) -> tuple[type[Event], ...]:
        """Upstream's name: the types a list-returning step may return bare."""
        return self.single_returns

    @property
    def collect_params(self) -> list[tuple[str, Any]] | None:
        """Upstream's step-config fact: ``(parameter, event type)`` of a multi-parameter
        join, in order, else None."""
        if not self.is_join:
            return None
        return [(name, types[0] if len(types) == 1 else types) for name, types in self.event_params]

    @property
    def is_join(self) -> bool:
        """True when the step takes more than one event parameter (fires when all arrived)."""
        return len(self.event_params) > 1

    @property
    def is_collect(self) -> bool:
        """True when the step takes a ``list[E]`` parameter (fan-in of a fan-out)."""
        return self.collection_name is not None

    @property
    def resources(self) -> list[ResourceDefinition]:
        """The resource parameters as ``ResourceDefinition`` objects (upstream's
        ``StepConfig.resources``): name, descriptor, annotated type."""
        types = dict(self.resource_types)
        return [
            ResourceDefinition(name=name, resource=descriptor, type_annotation=types.get(name))
            for name, descriptor in self.resource_params
        ]

    def accepts(self, event: Event) -> bool:
        """Routing rule: exact type, or subclass when the step opted in."""
        if self.accept_event_subclasses:
            return isinstance(event, self.accepted_events)
        return type(event) in self.accepted_events


def capture_localns(depth: int) -> dict[str, Any]:
    """Merge the locals of the scopes around a decorator call (innermost wins)."""
    merged: dict[str, Any] = {}
    frame = sys._getframe(depth + 1)
    frames: list[types.FrameType] = []
    while frame is not None and len(frames) < 4:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    for f in reversed(frames):
        merged.update(f.f_locals)
    return merged


def _union_members(hint: Any) -> tuple[Any, ...]:
    origin = get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return get_args(hint)
    return (hint,)


def _resource_descriptor(hint: Any) -> Any:
    """The Resource marker of ``Annotated[T, Resource(...)]``, told its type ``T``."""
    if get_origin(hint) is not typing.Annotated:
        return None
    base, *meta = get_args(hint)
    for marker in meta:
        if hasattr(marker, "resolve") and hasattr(marker, "cache"):
            if hasattr(marker, "set_type_annotation"):
                marker.set_type_annotation(base)
            return marker
    return None


def _is_event_type(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Event)


def _context_info(hint: Any) -> tuple[bool, type[BaseModel] | None]:
    from .context.context import Context  # local: context imports this module's users

    origin = get_origin(hint) or hint
    if isinstance(origin, type) and issubclass(origin, Context):
        args = get_args(hint)
        state = args[0] if args and isinstance(args[0], type) else None
        return True, state
    return False, None


def _resolve_hints(func: Callable[..., Any], localns: dict[str, Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, localns=localns, include_extras=True)
    except NameError as exc:
        missing = f" Missing name: {exc.name}." if getattr(exc, "name", None) else ""
        raise WorkflowValidationError(
            f"Failed to resolve type annotations for {func.__qualname__}.{missing} Define "
            "the event types at module level or in the scope where @step is applied."
        ) from exc


def _return_types(hint: Any) -> tuple[tuple[Any, ...], bool, tuple[Any, ...]]:
    """The returned types (list members included), whether a list is returned, and the
    types returned bare (outside the list)."""
    members: list[Any] = []
    single: list[Any] = []
    fan_out = False
    for member in _union_members(hint):
        if get_origin(member) is list:
            fan_out = True
            for inner in get_args(member):
                members.extend(_union_members(inner))
        else:
            members.append(member)
            single.append(member)
    as_types = tuple(type(None) if m is None else m for m in members)
    return as_types, fan_out, tuple(s for s in single if _is_event_type(s))


@dataclass
class _Params:
    context: str | None = None
    state_type: type[BaseModel] | None = None
    events: list[tuple[str, tuple[type[Event], ...]]] = field(default_factory=list)
    collection: str | None = None
    policy: Collect | None = None
    resources: list[tuple[str, Any]] = field(default_factory=list)
    resource_types: list[tuple[str, Any]] = field(default_factory=list)


def _classify(name: str, hint: Any, out: _Params, step_name: str) -> None:
    descriptor = _resource_descriptor(hint)
    if descriptor is not None:
        out.resources.append((name, descriptor))
        out.resource_types.append((name, get_args(hint)[0]))
        return
    is_ctx, state = _context_info(hint)
    if is_ctx:
        out.context, out.state_type = name, state
        return
    marker = None
    if get_origin(hint) is typing.Annotated:
        hint, *extras = get_args(hint)
        marker = next((m for m in extras if isinstance(m, Collect)), None)
    hint = _unwrap_optional_list(hint)
    if get_origin(hint) is list:
        flat = (m for a in get_args(hint) for m in _union_members(a))
        elems = tuple(dict.fromkeys(m for m in flat if m is not type(None)))
        if elems and all(_is_event_type(e) for e in elems):
            if out.collection is not None:
                raise WorkflowValidationError(
                    "A step may declare at most one list[E] collection parameter, but found "
                    f"both {out.collection!r} and {name!r}. Multi-slot collects are not "
                    "supported."
                )
            out.collection, out.policy = name, marker or Collect()
            if not isinstance(out.policy.cardinality, All | Take):
                raise WorkflowValidationError(
                    f"Collect cardinality on {name!r} must be All() or Take(n). "
                    "Other cardinalities are not supported."
                )
            out.events.append((name, elems))
            return
    if marker is not None:
        raise WorkflowValidationError(
            f"Parameter {name!r} carries a Collect marker but is not annotated as list[E] "
            "of an Event subclass. Collect markers apply only to collection fan-in "
            "(list[Event]) parameters."
        )
    if get_origin(hint) is list:
        return
    members = _union_members(hint)
    if members and all(_is_event_type(m) for m in members):
        out.events.append((name, members))


def _unwrap_optional_list(hint: Any) -> Any:
    """``list[E] | None`` is the collection ``list[E]`` (a member is never ``None``)."""
    members = [m for m in _union_members(hint) if m is not type(None)]
    if len(members) == 1 and len(_union_members(hint)) > 1 and get_origin(members[0]) is list:
        return members[0]
    return hint


def _check_event_params(params: _Params, func: Callable[..., Any]) -> None:
    """Upstream's rules for several event parameters (a multi-slot join)."""
    if not params.events:
        _raise("Step signature must have at least one parameter annotated as type Event", func)
    if len(params.events) == 1:
        return
    if params.collection is not None:
        _raise(
            "A list[E] collection parameter cannot be combined with other event parameters. "
            "Use a single list[E] parameter, or multiple single-event parameters for a "
            "multi-slot join.",
            func,
        )
    for name, accepted in params.events:
        if len(accepted) != 1:
            _raise(
                "Collect-mode steps (more than one event parameter) require each event "
                f"parameter to declare a single event type, but parameter {name!r} declares "
                f"{len(accepted)}. Union-typed collect parameters are not supported.",
                func,
            )


def _raise(message: str, func: Callable[..., Any]) -> NoReturn:
    # Upstream's message stays as it is (code matches on it); the note says where.
    error = WorkflowValidationError(message)
    error.add_note(f"in step {func.__qualname__!r} (module {func.__module__})")
    raise error


def build_spec(
    func: Callable[..., Any],
    localns: dict[str, Any],
    *,
    num_workers: int = 4,
    retry_policy: Any = None,
    accept_event_subclasses: bool = False,
    role: StepRole = "step",
    for_steps: list[str] | None = None,
    max_recoveries: int = 1,
    skip_graph_checks: list[str] | None = None,
) -> StepSpec:
    """Inspect ``func`` and return its spec, or raise WorkflowValidationError."""
    name = func.__name__
    hints = _resolve_hints(func, localns)
    params = _Params()
    for pname in inspect.signature(func).parameters:
        if pname == "self" or pname not in hints:
            continue
        _classify(pname, hints[pname], params, name)
    for _, descriptor in params.resources:
        # A factory's own string annotations may name what the step's scope defines.
        if hasattr(descriptor, "set_localns"):
            descriptor.set_localns(localns)
    _check_event_params(params, func)
    if "return" not in hints:
        _raise("Return types of workflows step functions must be annotated with their type.", func)
    returns, fan_out, single = _return_types(hints["return"])
    accepted = tuple(dict.fromkeys(t for _, ts in params.events for t in ts))
    if role == "catch_error" and accepted != (StepFailedEvent,):
        raise WorkflowValidationError(
            f"@catch_error handler '{name}' must accept StepFailedEvent as its event parameter."
        )
    return StepSpec(
        name=name,
        accepted_events=accepted,
        event_params=tuple(params.events),
        return_types=returns,
        context_parameter=params.context,
        context_state_type=params.state_type,
        resource_params=tuple(params.resources),
        is_async=inspect.iscoroutinefunction(func),
        num_workers=num_workers,
        retry_policy=retry_policy,
        accept_event_subclasses=accept_event_subclasses,
        is_fan_out=fan_out,
        collection_name=params.collection,
        collection_policy=params.policy,
        single_returns=single,
        role=role,
        catch_error_for_steps=tuple(for_steps) if for_steps is not None else None,
        catch_error_max_recoveries=max_recoveries,
        output_events=tuple(t for t in returns if _is_event_type(t)),
        skip_graph_checks=tuple(skip_graph_checks or ()),
        resource_types=tuple(params.resource_types),
    )
