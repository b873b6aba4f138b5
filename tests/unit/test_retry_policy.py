"""Behaviour of celery_workflows.retry_policy (see tests/conformance for upstream parity)."""

from __future__ import annotations

import ast
import hashlib
import inspect
import random
from datetime import timedelta
from typing import cast

import pytest

import celery_workflows.retry_policy as retry_policy_module
from celery_workflows.retry_policy import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
    WaitStrategy,
    next_retry_delay,
    retry_always,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_never,
    retry_policy,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    stop_never,
    wait_chain,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_incrementing,
    wait_random,
    wait_random_exponential,
)


class _Recorder:
    """A policy that records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, Exception, int | None]] = []

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        self.calls.append((elapsed_time, attempts, error, seed))
        return 1.0


def _expected_seed(run_id: str, step_name: str, attempts: int) -> int:
    digest = hashlib.sha256(f"{run_id}:{step_name}:{attempts}".encode()).hexdigest()
    return int(digest, 16) % 2**32


# --- purity ----------------------------------------------------------------------------


def test_retry_policy_module_imports_no_io_or_async_modules() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(retry_policy_module))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"asyncio", "os", "io", "socket", "time", "celery"})


# --- conditions, waits, stops ----------------------------------------------------------


def test_retry_if_exception_type_retries_only_matching_errors() -> None:
    condition = retry_if_exception_type((TimeoutError, ConnectionError))
    assert condition(TimeoutError()) and condition(ConnectionRefusedError())
    assert not condition(ValueError())


def test_retry_if_not_exception_type_retries_everything_else() -> None:
    assert retry_if_not_exception_type(PermissionError)(TimeoutError())
    assert not retry_if_not_exception_type(PermissionError)(PermissionError())


def test_retry_if_exception_message_rejects_missing_or_double_arguments() -> None:
    with pytest.raises(TypeError, match="'message' or 'match'"):
        retry_if_exception_message()
    with pytest.raises(TypeError, match="not both"):
        retry_if_exception_message(message="x", match="x")


def test_retry_if_exception_cause_type_ignores_the_error_itself() -> None:
    condition = retry_if_exception_cause_type(OSError)
    assert not condition(OSError())
    try:
        raise RuntimeError("wrapped") from OSError()
    except RuntimeError as wrapped:
        assert condition(wrapped)


def test_retry_conditions_combine_with_and_or() -> None:
    assert (retry_always() | retry_never())(ValueError())
    assert not (retry_always() & retry_never())(ValueError())


def test_wait_exponential_clamps_between_min_and_max() -> None:
    wait = wait_exponential(multiplier=1, exp_base=2, max=10, min=3)
    assert [wait(n) for n in range(6)] == [3.0, 3.0, 4.0, 8.0, 10.0, 10.0]


def test_exponential_waits_return_the_cap_instead_of_overflowing() -> None:
    # float ** int raises OverflowError past ~1e308; a never-stopping policy gets there.
    assert wait_exponential(max=60)(5000) == 60.0
    assert wait_exponential_jitter(max=60)(5000, seed=1) == 60.0
    assert 0.0 <= wait_random_exponential(max=60)(5000, seed=1) <= 60.0


def test_wait_incrementing_never_goes_negative_or_past_max() -> None:
    assert wait_incrementing(start=-3, increment=1)(0) == 0.0
    assert wait_incrementing(start=1, increment=10, max=15)(3) == 15.0


def test_seeded_random_wait_is_independent_of_the_global_rng() -> None:
    wait = wait_random(0, 100)
    random.seed(1)
    first = wait(0, seed=5)
    random.seed(2)
    assert wait(0, seed=5) == first


def test_unseeded_random_wait_uses_the_global_rng() -> None:
    wait = wait_random(0, 100)
    random.seed(3)
    first = wait(0)
    random.seed(3)
    assert wait(0) == first


def test_waits_accept_timedelta_durations() -> None:
    assert wait_fixed(timedelta(milliseconds=1500))(0) == 1.5


def test_wait_chain_needs_a_strategy() -> None:
    with pytest.raises(ValueError, match="at least one strategy"):
        wait_chain()


def test_waits_sum_with_builtin_sum() -> None:
    total = cast(WaitStrategy, sum([wait_fixed(1), wait_fixed(0.5)]))
    assert total(0) == 1.5


def test_stop_before_delay_stops_when_the_next_sleep_would_cross_the_limit() -> None:
    assert stop_before_delay(10)(1, 8.0, upcoming_sleep=2.0)
    assert not stop_before_delay(10)(1, 8.0, upcoming_sleep=1.0)


def test_stop_conditions_combine_with_and_or() -> None:
    either = stop_after_attempt(5) | stop_after_delay(30)
    assert either(5, 0.0) and either(1, 30.0) and not either(1, 0.0)


# --- policies --------------------------------------------------------------------------


def test_retry_policy_satisfies_the_protocol() -> None:
    assert isinstance(retry_policy(), RetryPolicy)


def test_retry_policy_defaults_to_three_attempts_five_seconds_apart() -> None:
    policy = retry_policy()
    assert [policy.next(0.0, n, ValueError()) for n in (1, 2, 3)] == [5.0, 5.0, None]


def test_retry_policy_stops_on_non_retryable_errors() -> None:
    policy = retry_policy(retry=retry_if_exception_type(TimeoutError), stop=stop_never())
    assert policy.next(0.0, 1, ValueError()) is None


def test_retry_policy_feeds_the_wait_a_zero_based_retry_number() -> None:
    policy = retry_policy(wait=wait_exponential(), stop=stop_never())
    assert [policy.next(0.0, n, ValueError()) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_constant_delay_retry_policy_warns_it_is_deprecated() -> None:
    with pytest.deprecated_call(match="use retry_policy"):
        policy = ConstantDelayRetryPolicy(maximum_attempts=1)
    assert policy.next(0.0, 1, ValueError()) is None


def test_exponential_backoff_retry_policy_without_jitter_is_exact() -> None:
    with pytest.deprecated_call():
        policy = ExponentialBackoffRetryPolicy(initial_delay=2, multiplier=2, jitter=False)
    assert [policy.next(0.0, n, ValueError()) for n in (1, 2, 3, 4, 5)] == [
        2.0,
        4.0,
        8.0,
        16.0,
        None,
    ]


# --- next_retry_delay ------------------------------------------------------------------


def test_next_retry_delay_without_a_policy_never_retries() -> None:
    assert (
        next_retry_delay(
            None, elapsed_time=0.0, attempts=1, error=ValueError(), run_id="r", step_name="s"
        )
        is None
    )


def test_next_retry_delay_seeds_from_run_step_and_attempts() -> None:
    recorder, error = _Recorder(), ValueError()
    next_retry_delay(
        recorder, elapsed_time=2.5, attempts=3, error=error, run_id="run-9", step_name="fetch"
    )
    assert recorder.calls == [(2.5, 3, error, _expected_seed("run-9", "fetch", 3))]


def test_next_retry_delay_is_reproducible_for_the_same_failure() -> None:
    policy = retry_policy(wait=wait_random(0, 1000), stop=stop_never())

    def decide(run_id: str, attempts: int) -> float | None:
        return next_retry_delay(
            policy,
            elapsed_time=0.0,
            attempts=attempts,
            error=ValueError(),
            run_id=run_id,
            step_name="s",
        )

    assert decide("a", 1) == decide("a", 1)
    assert len({decide("a", 1), decide("a", 2), decide("b", 1)}) == 3


def test_next_retry_delay_without_run_id_calls_the_policy_unseeded() -> None:
    recorder = _Recorder()
    next_retry_delay(
        recorder, elapsed_time=0.0, attempts=1, error=ValueError(), run_id=None, step_name="s"
    )
    assert recorder.calls[0][3] is None


def test_next_retry_delay_supports_policies_without_a_seed_parameter() -> None:
    class Legacy:
        def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
            return float(attempts)

    legacy = cast(RetryPolicy, Legacy())  # the runtime may still meet such policies
    delay = next_retry_delay(
        legacy, elapsed_time=0.0, attempts=4, error=ValueError(), run_id="r", step_name="s"
    )
    assert delay == 4.0
