"""``Workflow``: a class whose ``@step`` methods form an event graph."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from . import _graph
from ._resource_checks import check_resource_configs, check_resources
from ._serializers import JsonSerializer
from ._signature import StepSpec
from ._sync import run_sync
from .context.state_store import most_derived_state_type
from .decorators import WORKFLOW_GRAPH_CHECKS, _graph_checks
from .errors import WorkflowRuntimeError, WorkflowValidationError
from .events import Event, StartEvent, StopEvent
from .handler import WorkflowHandler
from .resource import ResourceManager

if TYPE_CHECKING:
    from .context.context import Context
    from .context.ports import RuntimePort

log = logging.getLogger("celery_workflows.workflow")

#: Makes the runtime of a workflow created without one. The package's ``__init__`` sets
#: it to the in-process runtime: a hook, so that the core imports nothing of the runtime.
default_runtime_factory: Callable[[], RuntimePort] | None = None


def _listed(title: str, errors: list[str]) -> str:
    return title + "\n" + "\n".join(f"  - {e}" for e in errors)


class _WorkflowMeta(type):
    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        cls._step_functions: dict[str, Callable[..., Any]] = {}


#: Upstream's name for the metaclass (each Workflow class gets its own free-step registry).
WorkflowMeta = _WorkflowMeta


class Workflow(metaclass=_WorkflowMeta):
    """An event-driven workflow: subclass it and mark methods with ``@step``.

    Args:
        timeout: seconds a run may take (None: no limit); WorkflowTimeoutError after.
        disable_validation: skip the event graph checks at ``run()``.
        verbose: print a line when a step starts and when it completes (to the
            ``celery_workflows.verbose`` logger when it logs INFO, else to stdout).
        resource_manager: where ``Resource`` values are built and cached.
        num_concurrent_runs: how many runs of this workflow may be active at once.
        runtime: where runs execute: ``CeleryRuntime(app, ...)`` or None for in-process.
        workflow_name: the stable name used in task names and the run store
            (default: ``module.QualName``).
        skip_graph_checks: graph checks not to run (``"reachability"``, ``"dead_end"``,
            ``"terminal_event"``); an unknown name is an error.
        serializer: a ``JsonSerializer(allowed_types=[...])`` registers more classes that
            stored payloads of this workflow may name: pydantic models kept in untyped
            state, exception classes to rebuild when a step fails. Payloads are always
            stored as JSON, and a class name read from them is never imported.
    """

    _step_functions: dict[str, Callable[..., Any]]
    #: Bumped by ``add_step`` on the class it adds to: a validation made for an older
    #: version of the steps is stale.
    _step_functions_version: int = 0

    def __init__(
        self,
        timeout: float | None = 45.0,
        disable_validation: bool = False,
        verbose: bool = False,
        resource_manager: ResourceManager | None = None,
        num_concurrent_runs: int | None = None,
        runtime: RuntimePort | None = None,
        workflow_name: str | None = None,
        skip_graph_checks: set[str] | None = None,
        serializer: Any = None,
    ) -> None:
        if num_concurrent_runs is not None and (
            isinstance(num_concurrent_runs, bool)
            or not isinstance(num_concurrent_runs, int)
            or num_concurrent_runs <= 0
        ):
            raise WorkflowValidationError(
                "num_concurrent_runs must be an integer greater than 0 or None"
            )
        self._timeout = timeout
        self._verbose = verbose
        self._skip_graph_checks = frozenset(_graph_checks(skip_graph_checks, WORKFLOW_GRAPH_CHECKS))
        self._disable_validation = disable_validation
        self._num_concurrent_runs = num_concurrent_runs
        self._workflow_name = workflow_name
        self._serializer = serializer
        self._resource_manager = resource_manager or ResourceManager()
        specs = self._step_specs()
        name = type(self).__name__
        self._start_event_class = _graph.start_event_class(specs, name)
        self._stop_event_class = _graph.stop_event_class(specs, name)
        self._events = _graph.collect_events(specs)
        self._validation_result: bool | None = None
        self._validated_version = -1
        self._runtime = runtime
        if runtime is not None:
            runtime.binding(self)

    # --- steps -----------------------------------------------------------------------

    @classmethod
    def add_step(cls, func: Callable[..., Any]) -> None:
        """Register a free function (decorated with ``@step(workflow=cls)``) as a step."""
        if getattr(func, "_step_config", None) is None:
            raise WorkflowValidationError(
                f"Step function {func.__name__} is missing the `@step` decorator."
            )
        if func.__name__ in cls._class_steps():
            raise WorkflowValidationError(
                f"A step {func.__name__} is already part of this workflow, please choose "
                "another name."
            )
        cls._step_functions[func.__name__] = func
        cls._step_functions_version += 1

    @classmethod
    def _class_steps(cls) -> dict[str, Callable[..., Any]]:
        found: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and hasattr(value, "_step_config"):
                    found[attr] = value
            found.update(getattr(klass, "_step_functions", {}))
        return found

    def _step_functions_by_name(self) -> dict[str, Callable[..., Any]]:
        """Each step's callable: bound methods, and free functions as they are."""
        functions: dict[str, Callable[..., Any]] = {}
        for name, func in type(self)._class_steps().items():
            is_method = name not in type(self)._step_functions and any(
                name in vars(k) for k in type(self).__mro__
            )
            functions[name] = getattr(self, name) if is_method else func
        return functions

    def _step_specs(self) -> dict[str, StepSpec]:
        """``{step name: spec}`` of every step."""
        specs: dict[str, StepSpec] = {}
        for name, func in type(self)._class_steps().items():
            spec: StepSpec = func._step_config  # type: ignore[attr-defined]
            specs[name] = spec
        return specs

    def _state_type(self) -> type[BaseModel]:
        """The typed state declared by ``Context[Model]`` annotations, else DictState.

        Steps may annotate different models when one derives from the others (a subclass
        workflow extending its parent's state): the most derived one is the state. Models
        that are not one line of inheritance are a ValueError, as upstream.
        """
        specs = self._step_specs().values()
        return most_derived_state_type(
            s.context_state_type for s in specs if s.context_state_type is not None
        )

    def _payload_types(self) -> list[type[Any]]:
        """Every class a payload of this workflow may name (its events and state)."""
        types: list[type[Any]] = [StartEvent, StopEvent, self._state_type()]
        for spec in self._step_specs().values():
            types.extend(spec.accepted_events)
            types.extend(spec.output_events)
        return list(dict.fromkeys(types))

    def _type_registry(self) -> JsonSerializer:
        """A JSON serializer that resolves exactly what this workflow registered: its event
        and state types, plus the classes registered on its own ``serializer=`` (models
        kept in state, exception classes to rebuild). Its payloads decode against it."""
        own = self._serializer
        extra = own.registered_types if isinstance(own, JsonSerializer) else ()
        return JsonSerializer().with_types(*extra, *self._payload_types())

    # --- properties ------------------------------------------------------------------

    @property
    def workflow_name(self) -> str:
        """Stable name of the workflow (explicit, or ``module.QualName``)."""
        if self._workflow_name is not None:
            return self._workflow_name
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def start_event_class(self) -> type[StartEvent]:
        """The StartEvent type the workflow takes."""
        return self._start_event_class

    @property
    def stop_event_class(self) -> type[StopEvent]:
        """The StopEvent type the workflow ends with."""
        return self._stop_event_class

    @property
    def events(self) -> list[type[Event]]:
        """Every event type the steps accept or return."""
        return self._events

    @property
    def runtime(self) -> RuntimePort:
        """The runtime runs go to (the in-process one of the running loop by default)."""
        if self._runtime is not None:
            return self._runtime
        if default_runtime_factory is None:
            raise WorkflowRuntimeError("no default runtime: import celery_workflows first")
        return default_runtime_factory()

    # --- validation and runs ---------------------------------------------------------

    def validate(
        self, *, validate_resource_configs: bool = True, validate_resources: bool = False
    ) -> bool:
        """Check the workflow's structure (always, even if a run already did); True if
        the workflow uses human-in-the-loop events.

        Resource configs are loaded too (``validate_resource_configs``); with
        ``validate_resources`` every resource factory is also built (it may need the
        environment), which finds dependency cycles.
        """
        return self._validate(
            validate_resource_configs=validate_resource_configs,
            validate_resources=validate_resources,
            force=True,
        )

    def _validate(
        self,
        *,
        validate_resource_configs: bool = True,
        validate_resources: bool = False,
        force: bool = False,
    ) -> bool:
        """Validate once per version of the steps: ``run()`` checks again only after a
        step was added (``add_step``, ``@step(workflow=...)``)."""
        specs = self._step_specs()
        if self._disable_validation and not force:
            # Which handler takes a failed step must be unambiguous even so (upstream
            # checks it when it builds the run's configuration).
            _graph.check_catch_error(specs)
            return False
        version = type(self)._step_functions_version
        if not force and self._validated_version == version and self._validation_result is not None:
            return self._validation_result
        name = type(self).__name__
        found = _graph.validate_workflow(specs, name, skip=self._skip_graph_checks)
        self._start_event_class = found.start_event_class
        self._stop_event_class = found.stop_event_class
        self._events = _graph.collect_events(specs)
        if validate_resource_configs and (errors := check_resource_configs(specs)):
            raise WorkflowValidationError(_listed("Resource config validation failed:", errors))
        if validate_resources:
            # On a helper thread when a loop runs here (upstream's asyncio.run would raise).
            manager = self._resource_manager
            errors = run_sync(lambda: check_resources(specs, manager), inline=False)
            if errors:
                raise WorkflowValidationError(_listed("Resource validation failed:", errors))
        self._validation_result, self._validated_version = found.uses_hitl, version
        return found.uses_hitl

    def _start_event(self, start_event: StartEvent | None, **kwargs: Any) -> StartEvent:
        if start_event is not None:
            if not isinstance(start_event, StartEvent):
                raise ValueError("The 'start_event' argument must be an instance of 'StartEvent'.")
            if kwargs:
                log.warning(
                    "Keyword arguments are not supported when 'run()' is invoked with the "
                    "'start_event' parameter. These keyword arguments will be ignored: %s",
                    kwargs,
                )
            return start_event
        try:
            return self._start_event_class(**kwargs)
        except ValidationError as exc:
            raise WorkflowRuntimeError(
                f"Failed creating a start event of type '{self._start_event_class.__name__}' "
                f"with the keyword arguments: {kwargs}"
            ) from exc

    def run(
        self,
        ctx: Context[Any] | None = None,
        start_event: StartEvent | None = None,
        **kwargs: Any,
    ) -> WorkflowHandler:
        """Start a run and return its handler at once.

        ``ctx`` selects the mode: None (fresh run); a context whose run finished (a new
        run that keeps its state); a restored snapshot of a live run (resume it, no new
        StartEvent). A context whose run is still going is an error.
        """
        from .context.context import Context
        from .errors import ContextStateError

        self._validate()
        run_id = kwargs.pop("run_id", None)
        ctx = ctx if ctx is not None else Context(self)
        started = ctx._not_started() is None
        if started and ctx.is_running:
            raise ContextStateError(
                "Cannot start a new run while context is already running. Wait for "
                "completion or use a new Context."
            )
        resuming = not started and ctx.is_running
        event = None if resuming else self._start_event(start_event, **kwargs)
        return self.runtime.start(self, ctx, event, run_id)
