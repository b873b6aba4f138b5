"""``@step`` and ``@catch_error``: mark workflow steps and read their signatures once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from ._signature import StepSpec, build_spec, capture_localns
from .errors import WorkflowValidationError

if TYPE_CHECKING:
    from .workflow import Workflow

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "CatchErrorHandler",
    "StepConfig",
    "StepFunction",
    "StepGraphCheck",
    "WorkflowGraphCheck",
    "catch_error",
    "step",
]

#: Upstream calls the spec ``StepConfig``; the name is kept for code that inspects it.
StepConfig = StepSpec


class StepFunction(Protocol):
    """A function marked by ``@step``: it carries its spec in ``_step_config``."""

    _step_config: StepSpec
    __name__: str
    __qualname__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def _is_free_function(qualname: str) -> bool:
    # A method's qualname is "Class.method" (possibly behind "<locals>." scopes).
    parts = qualname.split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


#: The names of the graph checks (upstream's ``Literal`` types, for annotations).
WorkflowGraphCheck = Literal["reachability", "terminal_event", "dead_end"]
StepGraphCheck = Literal["reachability", "dead_end"]


@dataclass(frozen=True)
class CatchErrorHandler:
    """A ``@catch_error`` handler as the run sees it: its step, the steps it covers
    (None: every step no scoped handler claims) and its recovery budget per run."""

    step_name: str
    for_steps: list[str] | None
    max_recoveries: int


#: Graph checks a workflow may skip (upstream's names). A step may name them too, but
#: only "reachability" and "dead_end" concern one step ("terminal_event" is ignored there,
#: as upstream does); a name that is no check at all is refused (upstream ignores it).
WORKFLOW_GRAPH_CHECKS = ("dead_end", "reachability", "terminal_event")
STEP_GRAPH_CHECKS = WORKFLOW_GRAPH_CHECKS


def _graph_checks(names: Any, valid: tuple[str, ...]) -> list[str]:
    """The checks named in ``names``, WorkflowValidationError for an unknown one."""
    chosen = list(names or ())
    unknown = sorted(set(chosen) - set(valid))
    if unknown:
        raise WorkflowValidationError(
            f"Unknown graph check names: {', '.join(unknown)}. Valid names are: {', '.join(valid)}"
        )
    return chosen


def _mark(
    func: F,
    localns: dict[str, Any],
    workflow: type[Workflow] | None,
    **options: Any,
) -> F:
    spec = build_spec(func, localns, **options)
    func._step_config = spec  # type: ignore[attr-defined]
    # A @catch_error handler is only marked, wherever it is defined (as upstream): it
    # takes no workflow to register with.
    if spec.role == "step" and _is_free_function(func.__qualname__):
        if workflow is None:
            raise WorkflowValidationError(
                f"To decorate {func.__name__} please pass a workflow class to the @step decorator."
            )
        workflow.add_step(func)
    return func


@overload
def step(func: F) -> F: ...


@overload
def step(
    *,
    workflow: type[Workflow] | None = None,
    num_workers: int = 4,
    retry_policy: Any = None,
    skip_graph_checks: list[str] | None = None,
    accept_event_subclasses: bool = False,
) -> Callable[[F], F]: ...


def step(
    func: F | None = None,
    *,
    workflow: type[Workflow] | None = None,
    num_workers: int = 4,
    retry_policy: Any = None,
    skip_graph_checks: list[str] | None = None,
    accept_event_subclasses: bool = False,
) -> F | Callable[[F], F]:
    """Mark a method (or, with ``workflow=``, a free function) as a workflow step.

    Args:
        workflow: the workflow class a free function belongs to.
        num_workers: how many invocations of this step may run at once in one run.
        retry_policy: a :class:`~celery_workflows.retry_policy.RetryPolicy`.
        skip_graph_checks: graph checks this step is exempt from (``"reachability"``,
            ``"dead_end"``); a name that is no graph check is an error.
        accept_event_subclasses: route subclasses of the accepted events here too.
    """
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers <= 0:
        raise WorkflowValidationError("num_workers must be an integer greater than 0")
    localns = capture_localns(1)

    def decorator(f: F) -> F:
        return _mark(
            f,
            localns,
            workflow,
            num_workers=num_workers,
            retry_policy=retry_policy,
            accept_event_subclasses=accept_event_subclasses,
            skip_graph_checks=_graph_checks(skip_graph_checks, STEP_GRAPH_CHECKS),
        )

    return decorator(func) if func is not None else decorator


@overload
def catch_error(func: F) -> F: ...


@overload
def catch_error(
    *, for_steps: list[str] | None = None, max_recoveries: int = 1
) -> Callable[[F], F]: ...


def catch_error(
    func: F | None = None,
    *,
    for_steps: list[str] | None = None,
    max_recoveries: int = 1,
) -> F | Callable[[F], F]:
    """Mark a method as the handler of steps that failed for good.

    The handler takes a :class:`~celery_workflows.events.StepFailedEvent` and may return
    any event (a StopEvent ends the run successfully). ``for_steps`` scopes it to named
    steps (None: every step no scoped handler claims); ``max_recoveries`` caps how often
    it may run in one run before the run fails.
    """
    if not isinstance(max_recoveries, int) or max_recoveries < 1:
        raise WorkflowValidationError("@catch_error max_recoveries must be an integer >= 1")
    if for_steps is not None and (
        not isinstance(for_steps, list) or not all(isinstance(s, str) for s in for_steps)
    ):
        raise WorkflowValidationError(
            "@catch_error for_steps must be None or a list of step name strings"
        )
    localns = capture_localns(1)

    def decorator(f: F) -> F:
        return _mark(
            f,
            localns,
            None,
            num_workers=1,
            role="catch_error",
            for_steps=for_steps,
            max_recoveries=max_recoveries,
        )

    return decorator(func) if func is not None else decorator
