"""Wait strategies and stop conditions of ``celery_workflows.retry_policy``: how long to
wait before a retry, and when to stop retrying. Pure: no clocks, no I/O; randomised
waits take an optional ``seed`` so a durable runtime can recompute a delay."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Protocol, cast

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


class _ExponentialBound(_Wait):
    """The parameters of an exponential wait (shared by the plain and the jittered one,
    which upstream keeps as unrelated classes: neither is an instance of the other)."""

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


class wait_exponential(_ExponentialBound):
    """Wait ``multiplier * exp_base ** n`` for retry ``n`` (0-based), kept in [min, max]."""

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


class wait_random_exponential(_ExponentialBound):
    """Full jitter: a random delay between ``min`` and the exponential bound for retry n."""

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


__all__ = [
    "StopCondition",
    "WaitStrategy",
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
