"""Retry policies for steps: when to retry a failed step, how long to wait, when to stop.

A policy answers one question, ``policy.next(elapsed_time, attempts, error)``: the number
of seconds to wait before the next attempt, or ``None`` to give up. Policies are composed
tenacity-style from three independent parts:

- a *retry condition* (``retry_if_*``) decides whether an error is worth retrying,
- a *wait strategy* (``wait_*``) computes the delay; strategies add up with ``+``,
- a *stop condition* (``stop_*``) ends the retries; conditions combine with ``&``/``|``.

Everything here is pure: no clocks, no I/O, no event loop. Randomised waits take an
optional ``seed`` so a durable runtime can recompute the exact same delay after a crash.
The public API mirrors ``workflows.retry_policy`` from llama-index-workflows 2.26.1.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ._retry_conditions import (
    RetryCondition,
    retry_all,
    retry_always,
    retry_any,
    retry_if_exception,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_message,
    retry_if_not_exception_type,
    retry_never,
    retry_unless_exception_type,
)
from ._retry_waits import (
    StopCondition,
    WaitStrategy,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_before_delay,
    stop_never,
    time_unit_type,
    wait_chain,
    wait_combine,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_full_jitter,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)

__all__ = [
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryCondition",
    "RetryInfo",
    "RetryPolicy",
    "StopCondition",
    "WaitStrategy",
    "next_retry_delay",
    "retry_all",
    "retry_always",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_cause_type",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_if_not_exception_message",
    "retry_if_not_exception_type",
    "retry_never",
    "retry_policy",
    "retry_unless_exception_type",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_before_delay",
    "stop_never",
    "time_unit_type",
    "wait_chain",
    "wait_combine",
    "wait_exponential",
    "wait_exponential_jitter",
    "wait_fixed",
    "wait_full_jitter",
    "wait_incrementing",
    "wait_none",
    "wait_random",
    "wait_random_exponential",
]


@dataclass(frozen=True)
class RetryInfo:
    """What a step knows about its own retries, as returned by ``Context.retry_info()``.

    Attributes:
        retry_number: How many times the step has been retried; 0 on the first attempt.
        elapsed_seconds: Seconds since the first attempt started (0.0 on the first one).
        last_exception: The exception the previous attempt raised, else ``None``. Its
            traceback does not survive a restore from persisted state.
        last_failed_at: When the previous attempt failed (aware, UTC), else ``None``.
    """

    retry_number: int
    elapsed_seconds: float
    last_exception: Exception | None
    last_failed_at: datetime | None


@runtime_checkable
class RetryPolicy(Protocol):
    """Anything with a matching ``next`` method can be passed as ``@step(retry_policy=...)``.

    Build one with :func:`retry_policy` rather than implementing this by hand, e.g.
    ``retry_policy(retry=retry_if_exception_type(TimeoutError), wait=wait_exponential(),
    stop=stop_after_attempt(5))``.
    """

    def next(
        self,
        elapsed_time: float,
        attempts: int,
        error: Exception,
        *,
        seed: int | None = None,
    ) -> float | None:
        """Return the delay in seconds before the next attempt, or ``None`` to stop.

        Args:
            elapsed_time: Seconds since the first attempt failed.
            attempts: Failures so far; 1 after the first failure.
            error: The exception the step just raised.
            seed: Seed for any randomness, so the same inputs give the same delay.
        """


# --- policies --------------------------------------------------------------------------


class _ComposedPolicy:
    """A :class:`RetryPolicy` made of a retry condition, a wait strategy and a stop condition."""

    def __init__(
        self,
        retry: RetryCondition | None,
        wait: WaitStrategy,
        stop: StopCondition,
    ) -> None:
        self.retry = retry
        self.wait = wait
        self.stop = stop

    def next(
        self,
        elapsed_time: float,
        attempts: int,
        error: Exception,
        *,
        seed: int | None = None,
    ) -> float | None:
        """Return the delay before the next attempt, or ``None`` to give up."""
        if self.retry is not None and not self.retry(error):
            return None
        # ``attempts`` counts failures from 1, wait strategies count retries from 0.
        # Clamping at 0 keeps a caller passing 0 off index -1 (wait_chain's last entry).
        delay = self.wait(max(attempts - 1, 0), seed=seed)
        if self.stop(attempts, elapsed_time, upcoming_sleep=delay):
            return None
        return delay


# Module-level so every default policy shares them; they hold no per-run state.
_DEFAULT_WAIT = wait_fixed(5)
_DEFAULT_STOP = stop_after_attempt(3)


def retry_policy(
    retry: RetryCondition | None = None,
    wait: WaitStrategy = _DEFAULT_WAIT,
    stop: StopCondition = _DEFAULT_STOP,
) -> RetryPolicy:
    """Build a retry policy from its three parts.

    Args:
        retry: Which errors to retry; ``None`` retries every error.
        wait: Delay before each retry; 5 seconds by default.
        stop: When to give up; after the third failure by default.

    Returns:
        A :class:`RetryPolicy` for ``@step(retry_policy=...)``.
    """
    return _ComposedPolicy(retry=retry, wait=wait, stop=stop)


def ConstantDelayRetryPolicy(maximum_attempts: int = 3, delay: float = 5) -> RetryPolicy:
    """Deprecated: retry every ``delay`` seconds, giving up after ``maximum_attempts`` failures.

    Use ``retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(maximum_attempts))``.
    """
    warnings.warn(
        "ConstantDelayRetryPolicy is deprecated, use "
        "retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(n)) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return _ComposedPolicy(
        retry=None, wait=wait_fixed(delay), stop=stop_after_attempt(maximum_attempts)
    )


def ExponentialBackoffRetryPolicy(
    maximum_attempts: int = 5,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 60.0,
    jitter: bool = True,
) -> RetryPolicy:
    """Deprecated: exponential backoff from ``initial_delay`` growing by ``multiplier``.

    With ``jitter`` the delay is drawn at random below the exponential bound (full
    jitter). Use ``retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n))``,
    or ``wait_random_exponential`` for the jittered form.
    """
    warnings.warn(
        "ExponentialBackoffRetryPolicy is deprecated, use "
        "retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n)) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    wait_class = wait_random_exponential if jitter else wait_exponential
    wait = wait_class(multiplier=initial_delay, exp_base=multiplier, max=max_delay)
    return _ComposedPolicy(retry=None, wait=wait, stop=stop_after_attempt(maximum_attempts))


def next_retry_delay(
    policy: RetryPolicy | None,
    *,
    elapsed_time: float,
    attempts: int,
    error: Exception,
    run_id: str | None,
    step_name: str,
) -> float | None:
    """Ask ``policy`` for the delay before the next attempt, with reproducible jitter.

    A worker can crash after deciding a retry and before recording it; the redelivered
    task must then reach the same decision. So the jitter seed is derived from
    ``(run_id, step_name, attempts)`` alone (the same derivation upstream uses, so seeded
    delays match across the two implementations). Without a ``run_id`` the policy is
    called unseeded. Policies whose ``next`` takes no ``seed`` are called without one.

    Args:
        policy: The step's retry policy; ``None`` means never retry.
        elapsed_time: Seconds since the step's first attempt.
        attempts: Failures so far, 1 after the first failure.
        error: The exception the step raised.
        run_id: The run's id, or ``None`` if unknown.
        step_name: The failing step's name.

    Returns:
        Seconds to wait before retrying, or ``None`` to stop retrying.
    """
    if policy is None:
        return None
    seed: int | None = None
    if run_id is not None:
        digest = hashlib.sha256(f"{run_id}:{step_name}:{attempts}".encode()).digest()
        seed = int.from_bytes(digest[-4:], "big")
    if seed is None or not _accepts_seed(policy):
        return policy.next(elapsed_time, attempts, error)
    return policy.next(elapsed_time, attempts, error, seed=seed)


def _accepts_seed(policy: RetryPolicy) -> bool:
    # Policies written against older upstream releases define next() without ``seed``.
    try:
        parameters = inspect.signature(policy.next).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in parameters)
