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
import random
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast, runtime_checkable

from ._retry_conditions import (
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

time_unit_type = int | float | timedelta
"""A duration: seconds as ``int``/``float``, or a ``timedelta``."""


def _to_seconds(value: time_unit_type) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _uniform(low: float, high: float, seed: int | None) -> float:
    # A private Random per seeded call keeps the result a pure function of the seed;
    # unseeded calls share the module RNG so tests can still pin it with random.seed().
    if seed is None:
        return random.uniform(low, high)
    return random.Random(seed).uniform(low, high)


def _exponential(multiplier: float, base: float, exponent: int, cap: float) -> float:
    # ``base ** exponent`` overflows a float after ~1000 retries; by then the cap applies.
    try:
        grown = multiplier * base**exponent
    except OverflowError:
        return cap
    return min(grown, cap)


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


class RetryCondition(Protocol):
    """A predicate saying whether an exception should be retried."""

    def __call__(self, error: BaseException) -> bool:
        """Return ``True`` to retry after ``error``."""
        ...


class WaitStrategy(Protocol):
    """Computes the delay before a retry.

    ``attempts`` here counts retries from 0 (the first retry), one less than the
    failure count that :meth:`RetryPolicy.next` receives.
    """

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        """Return the delay in seconds before retry number ``attempts`` (0-based)."""
        ...


class StopCondition(Protocol):
    """A predicate saying whether to give up retrying."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        """Return ``True`` to stop, given failures so far, time spent and the next delay."""
        ...


# --- wait strategies -------------------------------------------------------------------


class _Wait:
    """Shared operators for wait strategies: ``a + b`` and ``sum([...])`` add delays."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        raise NotImplementedError

    def __add__(self, other: WaitStrategy) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: object) -> object:
        # sum() starts from the int 0; treat it as the identity so sum(waits) works.
        if other == 0:
            return self
        if callable(other):
            return wait_combine(self, cast(WaitStrategy, other))
        return NotImplemented


class wait_fixed(_Wait):
    """Wait the same ``wait`` seconds before every retry."""

    def __init__(self, wait: time_unit_type) -> None:
        self.wait = _to_seconds(wait)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.wait


class wait_none(wait_fixed):
    """Retry immediately."""

    def __init__(self) -> None:
        super().__init__(0)


class wait_exponential(_Wait):
    """Wait ``multiplier * exp_base ** n`` for retry ``n`` (0-based), kept in [min, max]."""

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _to_seconds(max)
        self.min = _to_seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        floor = max(self.min, 0.0)
        return max(floor, _exponential(self.multiplier, self.exp_base, attempts, self.max))


class wait_incrementing(_Wait):
    """Wait ``start + increment * n`` for retry ``n`` (0-based), kept in [0, max]."""

    def __init__(
        self,
        start: time_unit_type = 0.0,
        increment: time_unit_type = 100.0,
        max: time_unit_type = float("inf"),
    ) -> None:
        self.start = _to_seconds(start)
        self.increment = _to_seconds(increment)
        self.max = _to_seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return max(0.0, min(self.start + self.increment * attempts, self.max))


class wait_random(_Wait):
    """Wait a uniformly random time in ``[min, max]``; reproducible when seeded."""

    def __init__(self, min: time_unit_type = 0.0, max: time_unit_type = 1.0) -> None:
        self.min = _to_seconds(min)
        self.max = _to_seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _uniform(self.min, self.max, seed)


class wait_exponential_jitter(_Wait):
    """Exponential delay ``initial * exp_base ** n`` plus up to ``jitter`` seconds, <= max."""

    def __init__(
        self,
        initial: float = 1.0,
        exp_base: float = 2.0,
        max: float = 60.0,
        jitter: float = 1.0,
    ) -> None:
        self.initial = initial
        self.exp_base = exp_base
        self.max = max
        self.jitter = jitter

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        base = _exponential(self.initial, self.exp_base, attempts, self.max)
        return min(base + _uniform(0, self.jitter, seed), self.max)


class wait_random_exponential(_Wait):
    """Full jitter: a random delay between ``min`` and the exponential bound for retry n."""

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _to_seconds(max)
        self.min = _to_seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        bound = _exponential(self.multiplier, self.exp_base, attempts, self.max)
        return _uniform(self.min, max(self.min, 0.0, bound), seed)


def wait_full_jitter(
    multiplier: int | float = 1.0,
    exp_base: int | float = 2.0,
    max: time_unit_type = 60.0,
    min: time_unit_type = 0.0,
) -> wait_random_exponential:
    """Build a :class:`wait_random_exponential`; the name used by the AWS backoff article."""
    return wait_random_exponential(multiplier=multiplier, exp_base=exp_base, max=max, min=min)


class wait_chain(_Wait):
    """Use ``strategies[n]`` for retry ``n``, then keep using the last one."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        if not strategies:
            raise ValueError("wait_chain requires at least one strategy")
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        chosen = self.strategies[min(attempts, len(self.strategies) - 1)]
        return chosen(attempts, seed=seed)


class wait_combine(_Wait):
    """Wait the sum of the delays of ``strategies``; the named form of ``a + b``."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return sum(strategy(attempts, seed=seed) for strategy in self.strategies)


# --- stop conditions -------------------------------------------------------------------


class _Stop:
    """Shared operators for stop conditions: ``a & b`` needs both, ``a | b`` either."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        raise NotImplementedError

    def __and__(self, other: StopCondition) -> stop_all:
        return stop_all(self, other)

    def __rand__(self, other: StopCondition) -> stop_all:
        return stop_all(other, self)

    def __or__(self, other: StopCondition) -> stop_any:
        return stop_any(self, other)

    def __ror__(self, other: StopCondition) -> stop_any:
        return stop_any(other, self)


class stop_after_attempt(_Stop):
    """Stop once the step has failed ``max_attempt_number`` times."""

    def __init__(self, max_attempt_number: int) -> None:
        self.max_attempt_number = max_attempt_number

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return attempts >= self.max_attempt_number


class stop_after_delay(_Stop):
    """Stop once ``max_delay`` has elapsed since the first failure."""

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = _to_seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time >= self.max_delay


class stop_before_delay(_Stop):
    """Stop when waiting for the next retry would reach ``max_delay``."""

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = _to_seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time + upcoming_sleep >= self.max_delay


class stop_any(_Stop):
    """Stop when at least one of ``stops`` says so; the named form of ``a | b``."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return any(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_all(_Stop):
    """Stop only when every one of ``stops`` says so; the named form of ``a & b``."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return all(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_never(_Stop):
    """Never stop; bound the retries another way (retry condition, run timeout)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return False


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
