"""Errors raised by celery_workflows.

The upstream names (``WorkflowValidationError``, ``WorkflowTimeoutError``, ...) keep their
meaning and messages; each also derives from :class:`CeleryWorkflowsError` so callers can
catch everything this package raises with one class. Leaves are grouped by layer:
definition (graph, decorators), run (a run in flight), store (the run store seam).
"""

from __future__ import annotations


class CeleryWorkflowsError(Exception):
    """Base class of every error raised by celery_workflows."""


# --- definition layer (upstream names) -------------------------------------------------


class WorkflowValidationError(CeleryWorkflowsError):
    """The workflow's steps or event graph are not well formed."""


class WorkflowConfigurationError(WorkflowValidationError):
    """The workflow is missing something it needs to run (start/stop event, steps)."""


# --- run layer (upstream names) --------------------------------------------------------


class WorkflowTimeoutError(CeleryWorkflowsError):
    """The run exceeded the workflow's ``timeout``."""


class WorkflowRuntimeError(CeleryWorkflowsError):
    """A run could not proceed (bad start event, unknown step, step misuse, ...)."""


class WorkflowDone(CeleryWorkflowsError):
    """Raised internally when a run has already finished."""


class WorkflowCancelledByUser(CeleryWorkflowsError):
    """The run was cancelled through ``handler.cancel_run()``."""


class WorkflowStepDoesNotExistError(CeleryWorkflowsError):
    """An event was addressed to a step the workflow does not have."""


class ContextSerdeError(CeleryWorkflowsError):
    """A context snapshot could not be serialized or restored."""


class ContextStateError(CeleryWorkflowsError):
    """A Context method was called in a phase where it is not available."""


# --- store layer -----------------------------------------------------------------------


class StoreError(CeleryWorkflowsError):
    """Base class of run store errors."""


class RunNotFoundError(StoreError, KeyError):
    """No run with the given id exists in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} does not exist in the run store")
        self.run_id = run_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DeliveryNotFoundError(StoreError, KeyError):
    """No delivery with the given id exists in the store."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"delivery {delivery_id!r} does not exist in the run store")
        self.delivery_id = delivery_id

    def __str__(self) -> str:
        return str(self.args[0])


class FencedOutError(StoreError):
    """A write came from a delivery attempt that has been superseded (a zombie)."""

    def __init__(self, delivery_id: str, attempt: int, current: int | None, status: str) -> None:
        super().__init__(
            f"delivery {delivery_id!r} attempt {attempt} is fenced out "
            f"(current attempt {current}, status {status}); its write was refused"
        )
        self.delivery_id = delivery_id
        self.attempt = attempt


class RunConflictError(StoreError, ValueError):
    """A run id (or idempotency key) already names a run started differently.

    A run id is an idempotency key: starting it again with the same workflow and the same
    start event returns the existing run; with another workflow or other start arguments
    it raises this error and writes nothing. ``field`` says what differed (``workflow`` or
    ``start event``).
    """

    def __init__(self, run_id: str, field: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.field = field


class StateValidationError(StoreError, ValueError):
    """State failed validation or could not be encoded; the stored state is unchanged."""


class StoreUnavailableError(StoreError):
    """The database behind the run store cannot be reached (URL shown with password masked)."""


class InvalidMessageError(CeleryWorkflowsError, ValueError):
    """A delivery or event payload was rejected (unknown type, bad payload, too large)."""
