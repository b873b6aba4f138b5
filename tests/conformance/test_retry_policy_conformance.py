"""The same retry policy assertions, run against upstream ``workflows`` and against us.

Every test takes ``rp``, the ``retry_policy`` module of one implementation, so a failure
names the implementation that diverges.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

PUBLIC_NAMES = [
    "RetryInfo",
    "RetryPolicy",
    "RetryCondition",
    "WaitStrategy",
    "StopCondition",
    "time_unit_type",
    "retry_policy",
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "retry_if_exception",
    "retry_if_exception_type",
    "retry_if_not_exception_type",
    "retry_unless_exception_type",
    "retry_if_exception_message",
    "retry_if_not_exception_message",
    "retry_if_exception_cause_type",
    "retry_any",
    "retry_all",
    "retry_always",
    "retry_never",
    "wait_fixed",
    "wait_none",
    "wait_exponential",
    "wait_incrementing",
    "wait_random",
    "wait_exponential_jitter",
    "wait_random_exponential",
    "wait_full_jitter",
    "wait_chain",
    "wait_combine",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_before_delay",
    "stop_any",
    "stop_all",
    "stop_never",
]


@pytest.fixture(
    params=[
        pytest.param("workflows", marks=pytest.mark.upstream),
        "celery_workflows",
    ]
)
def rp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(f"{request.param}.retry_policy")


def _caused_by(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as chained:
        return chained


# --- surface ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_module_exports_public_name(rp: ModuleType, name: str) -> None:
    assert hasattr(rp, name)


def test_retry_info_is_a_frozen_record(rp: ModuleType) -> None:
    failed_at = datetime(2026, 1, 1, tzinfo=UTC)
    info = rp.RetryInfo(
        retry_number=2, elapsed_seconds=1.5, last_exception=None, last_failed_at=failed_at
    )
    assert [f.name for f in dataclasses.fields(info)] == [
        "retry_number",
        "elapsed_seconds",
        "last_exception",
        "last_failed_at",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.retry_number = 3


def test_retry_policy_protocol_accepts_any_object_with_next(rp: ModuleType) -> None:
    class Custom:
        def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
            return None

    assert isinstance(Custom(), rp.RetryPolicy)
    assert isinstance(rp.retry_policy(), rp.RetryPolicy)
    assert not isinstance(object(), rp.RetryPolicy)


# --- retry conditions ------------------------------------------------------------------


def test_retry_if_exception_type_matches_instances_and_tuples(rp: ModuleType) -> None:
    single = rp.retry_if_exception_type(KeyError)
    several = rp.retry_if_exception_type((KeyError, TimeoutError))
    assert single(KeyError()) and not single(ValueError())
    assert several(TimeoutError()) and not several(ValueError())
    assert rp.retry_if_exception_type()(ValueError())
    assert not rp.retry_if_exception_type()(KeyboardInterrupt())
    assert single.exception_types is KeyError


def test_retry_if_not_exception_type_and_alias_invert_the_match(rp: ModuleType) -> None:
    for cls in (rp.retry_if_not_exception_type, rp.retry_unless_exception_type):
        condition = cls(ValueError)
        assert not condition(ValueError()) and condition(KeyError())
    assert issubclass(rp.retry_unless_exception_type, rp.retry_if_not_exception_type)
    assert issubclass(rp.retry_if_exception_type, rp.retry_if_exception)


def test_retry_if_exception_uses_the_predicate(rp: ModuleType) -> None:
    condition = rp.retry_if_exception(lambda e: "limit" in str(e))
    assert condition(RuntimeError("rate limit")) and not condition(RuntimeError("boom"))


def test_retry_if_exception_message_matches_exact_text_or_regex(rp: ModuleType) -> None:
    exact = rp.retry_if_exception_message(message="try again")
    assert exact(RuntimeError("try again")) and not exact(RuntimeError("try again later"))
    regex = rp.retry_if_exception_message(match=r"HTTP 5\d\d")
    assert regex(RuntimeError("got HTTP 503 from upstream")) and not regex(RuntimeError("404"))
    compiled = rp.retry_if_exception_message(match=re.compile("^temp"))
    assert compiled(RuntimeError("temporary")) and not compiled(RuntimeError("not temp"))


def test_retry_if_exception_message_requires_exactly_one_argument(rp: ModuleType) -> None:
    with pytest.raises(TypeError, match="missing 1 required argument 'message' or 'match'"):
        rp.retry_if_exception_message()
    with pytest.raises(TypeError, match="takes either 'message' or 'match', not both"):
        rp.retry_if_exception_message(message="a", match="a")


def test_retry_if_not_exception_message_inverts_the_match(rp: ModuleType) -> None:
    condition = rp.retry_if_not_exception_message(match="invalid api key")
    assert not condition(RuntimeError("invalid api key")) and condition(RuntimeError("timeout"))


def test_retry_if_exception_cause_type_follows_only_explicit_causes(rp: ModuleType) -> None:
    condition = rp.retry_if_exception_cause_type(ConnectionError)
    deep = _caused_by(RuntimeError("outer"), _caused_by(ValueError("mid"), ConnectionError()))
    assert condition(deep)
    assert not condition(ConnectionError("itself, no cause"))
    try:
        try:
            raise ConnectionError
        except ConnectionError:
            raise RuntimeError("implicit context only") from None
    except RuntimeError as implicit:
        assert not condition(implicit)


def test_retry_combinators_and_operators_compose(rp: ModuleType) -> None:
    is_runtime = rp.retry_if_exception_type(RuntimeError)
    says_temp = rp.retry_if_exception_message(match="temp")
    both, either = is_runtime & says_temp, is_runtime | says_temp
    assert isinstance(both, rp.retry_all) and isinstance(either, rp.retry_any)
    assert both(RuntimeError("temp")) and not both(RuntimeError("perm"))
    assert either(ValueError("temp")) and not either(ValueError("perm"))
    assert isinstance((lambda e: True) & is_runtime, rp.retry_all)
    assert isinstance((lambda e: False) | is_runtime, rp.retry_any)
    assert rp.retry_always()(ValueError()) and not rp.retry_never()(ValueError())
    assert rp.retry_any()(ValueError()) is False and rp.retry_all()(ValueError()) is True


# --- wait strategies -------------------------------------------------------------------


def test_wait_fixed_and_none_ignore_the_attempt(rp: ModuleType) -> None:
    assert rp.wait_fixed(3)(0) == 3.0 and rp.wait_fixed(3)(9) == 3.0
    assert rp.wait_fixed(timedelta(minutes=1))(0) == 60.0
    assert rp.wait_none()(5) == 0.0
    assert isinstance(rp.wait_none(), rp.wait_fixed)


def test_wait_exponential_grows_and_is_clamped(rp: ModuleType) -> None:
    wait = rp.wait_exponential(multiplier=2, exp_base=3, max=100, min=5)
    assert [wait(n) for n in range(5)] == [5.0, 6.0, 18.0, 54.0, 100.0]
    assert rp.wait_exponential()(0) == 1.0
    assert rp.wait_exponential(max=timedelta(seconds=10))(10) == 10.0


def test_wait_incrementing_adds_a_step_per_retry(rp: ModuleType) -> None:
    wait = rp.wait_incrementing(start=1, increment=2, max=6)
    assert [wait(n) for n in range(5)] == [1.0, 3.0, 5.0, 6.0, 6.0]
    assert rp.wait_incrementing(start=-5, increment=1)(0) == 0.0
    assert rp.wait_incrementing()(2) == 200.0


def test_random_waits_stay_in_bounds_and_repeat_with_a_seed(rp: ModuleType) -> None:
    random_wait = rp.wait_random(min=1, max=2)
    jitter = rp.wait_exponential_jitter(initial=1, exp_base=2, max=60, jitter=1)
    full = rp.wait_random_exponential(multiplier=1, exp_base=2, max=60)
    for n in range(6):
        assert 1.0 <= random_wait(n) <= 2.0
        assert 2.0**n <= jitter(n) <= 2.0**n + 1
        assert 0.0 <= full(n) <= 2.0**n
        assert random_wait(n, seed=n) == random_wait(n, seed=n)
        assert jitter(n, seed=n) == jitter(n, seed=n)
        assert full(n, seed=n) == full(n, seed=n)
    assert rp.wait_exponential_jitter(max=3)(10) == 3.0


def test_wait_full_jitter_builds_a_random_exponential(rp: ModuleType) -> None:
    wait = rp.wait_full_jitter(multiplier=2, exp_base=3, max=7, min=1)
    assert isinstance(wait, rp.wait_random_exponential)
    assert (wait.multiplier, wait.exp_base, wait.max, wait.min) == (2.0, 3.0, 7.0, 1.0)


def test_wait_chain_uses_one_strategy_per_retry_then_the_last(rp: ModuleType) -> None:
    wait = rp.wait_chain(rp.wait_fixed(1), rp.wait_fixed(2), rp.wait_fixed(5))
    assert [wait(n) for n in range(5)] == [1.0, 2.0, 5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="wait_chain requires at least one strategy"):
        rp.wait_chain()


def test_waits_add_up_with_plus_sum_and_combine(rp: ModuleType) -> None:
    combined = rp.wait_fixed(1) + rp.wait_fixed(2)
    assert isinstance(combined, rp.wait_combine) and combined(0) == 3.0
    assert sum([rp.wait_fixed(1), rp.wait_fixed(2), rp.wait_fixed(4)])(0) == 7.0
    assert (rp.wait_fixed(1) + (lambda attempts, seed=None: 10.0))(0) == 11.0
    assert ((lambda attempts, seed=None: 10.0) + rp.wait_fixed(1))(0) == 11.0
    with pytest.raises(TypeError):
        _ = "x" + rp.wait_fixed(1)


# --- stop conditions -------------------------------------------------------------------


def test_stop_after_attempt_and_delay(rp: ModuleType) -> None:
    assert not rp.stop_after_attempt(3)(2, 0.0) and rp.stop_after_attempt(3)(3, 0.0)
    assert not rp.stop_after_delay(10)(1, 9.9) and rp.stop_after_delay(10)(1, 10.0)
    assert rp.stop_after_delay(timedelta(seconds=10))(1, 10.0)


def test_stop_before_delay_counts_the_upcoming_sleep(rp: ModuleType) -> None:
    stop = rp.stop_before_delay(10)
    assert not stop(1, 5.0, upcoming_sleep=4.9)
    assert stop(1, 5.0, upcoming_sleep=5.0)
    assert not rp.stop_after_delay(10)(1, 5.0, upcoming_sleep=5.0)


def test_stop_combinators_and_operators_compose(rp: ModuleType) -> None:
    attempts, delay = rp.stop_after_attempt(3), rp.stop_after_delay(10)
    assert isinstance(attempts | delay, rp.stop_any) and isinstance(attempts & delay, rp.stop_all)
    assert (attempts | delay)(1, 10.0) and not (attempts & delay)(1, 10.0)
    assert (attempts & delay)(3, 10.0)
    assert isinstance((lambda a, e, upcoming_sleep=0.0: True) | attempts, rp.stop_any)
    assert isinstance((lambda a, e, upcoming_sleep=0.0: True) & attempts, rp.stop_all)
    assert not rp.stop_never()(10**6, 10.0**6)


# --- policies --------------------------------------------------------------------------


def test_default_policy_waits_five_seconds_and_stops_at_the_third_failure(
    rp: ModuleType,
) -> None:
    policy = rp.retry_policy()
    assert policy.next(0.0, 1, ValueError()) == 5.0
    assert policy.next(0.0, 2, ValueError()) == 5.0
    assert policy.next(0.0, 3, ValueError()) is None


def test_policy_gives_up_on_errors_the_condition_rejects(rp: ModuleType) -> None:
    policy = rp.retry_policy(retry=rp.retry_if_exception_type(TimeoutError))
    assert policy.next(0.0, 1, TimeoutError()) == 5.0
    assert policy.next(0.0, 1, ValueError()) is None


def test_policy_passes_the_zero_based_retry_index_to_the_wait(rp: ModuleType) -> None:
    wait = rp.wait_chain(rp.wait_fixed(1), rp.wait_fixed(2), rp.wait_fixed(3))
    policy = rp.retry_policy(wait=wait, stop=rp.stop_never())
    assert [policy.next(0.0, n, ValueError()) for n in (0, 1, 2, 3, 4)] == [1, 1, 2, 3, 3]


def test_policy_stop_sees_the_upcoming_sleep(rp: ModuleType) -> None:
    policy = rp.retry_policy(wait=rp.wait_fixed(4), stop=rp.stop_before_delay(10))
    assert policy.next(5.0, 1, ValueError()) == 4.0
    assert policy.next(6.0, 1, ValueError()) is None


def test_policy_forwards_the_seed_to_the_wait(rp: ModuleType) -> None:
    policy = rp.retry_policy(wait=rp.wait_random(0, 100), stop=rp.stop_never())
    assert policy.next(0.0, 1, ValueError(), seed=11) == policy.next(0.0, 1, ValueError(), seed=11)
    assert policy.next(0.0, 1, ValueError(), seed=11) == rp.wait_random(0, 100)(0, seed=11)


def test_constant_delay_policy_is_deprecated_but_works(rp: ModuleType) -> None:
    with pytest.warns(DeprecationWarning, match="ConstantDelayRetryPolicy is deprecated"):
        policy = rp.ConstantDelayRetryPolicy(maximum_attempts=2, delay=7)
    assert policy.next(0.0, 1, ValueError()) == 7.0
    assert policy.next(0.0, 2, ValueError()) is None


def test_exponential_backoff_policy_is_deprecated_but_works(rp: ModuleType) -> None:
    with pytest.warns(DeprecationWarning, match="ExponentialBackoffRetryPolicy is deprecated"):
        plain = rp.ExponentialBackoffRetryPolicy(
            maximum_attempts=4, initial_delay=1, multiplier=3, max_delay=5, jitter=False
        )
    assert [plain.next(0.0, n, ValueError()) for n in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, None]
    with pytest.warns(DeprecationWarning):
        jittered = rp.ExponentialBackoffRetryPolicy(initial_delay=1, multiplier=2)
    delay = jittered.next(0.0, 3, ValueError())
    assert delay is not None and 0.0 <= delay <= 4.0


# --- cross-implementation --------------------------------------------------------------


@pytest.mark.upstream
@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_seeded_random_waits_match_between_implementations(seed: int) -> None:
    ours = importlib.import_module("celery_workflows.retry_policy")
    theirs = importlib.import_module("workflows.retry_policy")
    for name, kwargs in [
        ("wait_random", {"min": 1, "max": 9}),
        ("wait_exponential_jitter", {"initial": 1, "jitter": 3}),
        ("wait_random_exponential", {"multiplier": 2, "min": 1}),
    ]:
        for n in range(4):
            mine = getattr(ours, name)(**kwargs)(n, seed=seed)
            assert mine == getattr(theirs, name)(**kwargs)(n, seed=seed)


@pytest.mark.upstream
def test_next_retry_delay_seeds_like_the_upstream_runtime() -> None:
    from workflows.retry_policy import retry_policy as their_policy
    from workflows.retry_policy import wait_random as their_wait
    from workflows.runtime.control_loop.reduce import _decide_retry_delay

    from celery_workflows.retry_policy import next_retry_delay, retry_policy, stop_never
    from celery_workflows.retry_policy import wait_random as our_wait

    ours = retry_policy(wait=our_wait(0, 1000), stop=stop_never())
    theirs = their_policy(wait=their_wait(0, 1000), stop=stop_never())
    for attempts in (1, 2, 3):
        error = ValueError()
        expected = _decide_retry_delay(
            theirs,
            elapsed_time=0.0,
            failures=attempts,
            exception=error,
            run_id="run-1",
            step_name="fetch",
        )
        actual = next_retry_delay(
            ours,
            elapsed_time=0.0,
            attempts=attempts,
            error=error,
            run_id="run-1",
            step_name="fetch",
        )
        assert actual == expected
